import os
import tempfile
from pathlib import Path

import jax
import pytest
from hypothesis import Phase, settings

# Strict promotion: an accidental broadcast or dtype upcast in the library is a test failure.
# The environment variables carry the same settings into the CLI and worker subprocesses.
os.environ["JAX_NUMPY_RANK_PROMOTION"] = "raise"
os.environ["JAX_NUMPY_DTYPE_PROMOTION"] = "strict"
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

# One compilation cache for this session and the CLI subprocesses it starts: the kill /
# resume and command-line tests compile the same small programs in many processes.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="jax_rnnlm_xla_"))
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

# Hypothesis: by default no shrink phase (a failure is reported at once, with the seed
# to rerun it: --hypothesis-seed=N); HYPOTHESIS_PROFILE=dev shrinks to a minimal example.
settings.register_profile("ci", phases=[Phase.explicit, Phase.reuse, Phase.generate],
                          print_blob=True, deadline=None)
settings.register_profile("dev", print_blob=True, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The shared data sets (PTB for the recorded toy) live beside the checkout unless CI says otherwise.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
os.environ.setdefault("JAX_RNNLM_DATA", str(SHARED_DATA))
# Id caches of the test corpora (idcache.py) go to a directory of this session only.
os.environ.setdefault("JAX_RNNLM_CACHE", tempfile.mkdtemp(prefix="jax_rnnlm_ids_"))


@pytest.fixture(autouse=True, scope="module")
def fresh_compiled_programs():
    """Drop the compiled programs after each test module. Every executable XLA:CPU
    loads holds about three memory maps, and a process may have 65,530
    (vm.max_map_count): the whole suite in one process compiles enough programs to
    reach that, and XLA then crashes with a segmentation fault in the next compile."""
    yield
    jax.clear_caches()


@pytest.fixture
def tiny_corpus_dir(tmp_path):
    """A three-split word corpus small enough to train on in a second."""
    lines = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog"]
    for split, n in (("train", 40), ("valid", 6), ("test", 6)):
        (tmp_path / f"{split}.txt").write_text("\n".join(lines * (n // 3 + 1)) + "\n")
    return tmp_path


@pytest.fixture
def repetitive_corpus(tmp_path):
    """A corpus whose three splits repeat one 8-word line: a model can learn it to ppl ~1."""
    from jax_rnnlm import data
    for split in data.SPLITS:
        (tmp_path / f"{split}.txt").write_text("a b c d e f g h\n" * 300)
    return data.load_corpus(tmp_path)
