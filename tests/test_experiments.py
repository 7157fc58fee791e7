"""The recorded toy experiment is small enough to be a test (needs PTB in $JAX_RNNLM_DATA)."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import book_simple_rnn  # noqa: E402


def test_book_simple_rnn_drives_train_perplexity_from_vocab_size_to_below_6(tmp_path):
    summary = book_simple_rnn.run(tmp_path)
    lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").open()]
    train_ppl = [l["train_ppl"] for l in lines if "train_ppl" in l]
    assert train_ppl[0] > 300  # vocabulary of the first 1000 words: 418 types
    assert train_ppl[-1] <= 6.0 and summary["val_ppl"] <= 6.0
