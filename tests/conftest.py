import os
from pathlib import Path

import jax
import pytest

# Strict promotion: an accidental broadcast or dtype upcast in the library is a test failure.
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

# The shared data sets (PTB for the recorded toy) live beside the checkout unless CI says otherwise.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
os.environ.setdefault("JAX_RNNLM_DATA", str(SHARED_DATA))


@pytest.fixture
def tiny_corpus_dir(tmp_path):
    """A three-split word corpus small enough to train on in a second."""
    lines = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog"]
    for split, n in (("train", 40), ("valid", 6), ("test", 6)):
        (tmp_path / f"{split}.txt").write_text("\n".join(lines * (n // 3 + 1)) + "\n")
    return tmp_path
