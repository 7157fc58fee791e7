"""The training loop: schedules, learning, determinism, max steps, the summary, settings."""
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jax_rnnlm import data, train, workdir
from jax_rnnlm.config import ModelConfig, TrainConfig


def test_zaremba_schedule_halves_after_epoch_four():
    cfg = TrainConfig(lr=20.0, lr_decay=0.5, decay_after=4)
    assert [train.epoch_lr(cfg, e) for e in range(7)] == [20, 20, 20, 20, 10, 5, 2.5]


def test_plateau_rule_divides_by_four_when_val_does_not_improve():
    best, scale = train.plateau_update(math.inf, 150.0, 1.0, 0.25)
    assert (best, scale) == (150.0, 1.0)
    best, scale = train.plateau_update(best, 151.0, scale, 0.25)
    assert (best, scale) == (150.0, 0.25)
    assert train.plateau_update(best, 120.0, scale, 0.25) == (120.0, 0.25)


@settings(max_examples=60, deadline=None)
@given(n_targets=st.integers(1, 400), bptt=st.integers(1, 30), w=st.integers(1, 7),
       seed=st.integers(0, 3), epoch=st.integers(0, 3), variable=st.booleans(),
       first=st.integers(0, 60))
def test_an_epoch_plan_tiles_the_stream_and_resumes_where_it_stopped(
        n_targets, bptt, w, seed, epoch, variable, first):
    cfg = TrainConfig(bptt=bptt, windows_per_call=w, seed=seed, variable_bptt=variable)
    plan = train.epoch_calls(0, n_targets, cfg, epoch)
    lengths = train.window_lengths(bptt)[0] if variable else (bptt,)
    t = 0
    for starts, T in plan:
        assert T in lengths and 1 <= len(starts) <= w
        assert list(starts) == list(range(t, t + len(starts) * T, T))  # contiguous windows
        t += len(starts) * T
    assert t <= n_targets and n_targets - t < max(lengths)  # the rest fits no window
    windows = [(int(s), T) for starts, T in plan for s in starts]
    resumed = [(int(s), T) for starts, T in train.epoch_calls(first, n_targets, cfg, epoch)
               for s in starts]
    assert resumed == windows[first:]
    edges = list(np.cumsum([0] + [len(starts) for starts, _ in plan]))
    if first in edges:  # resumed at a call boundary: the same compiled calls as before
        tail = train.epoch_calls(first, n_targets, cfg, epoch)
        assert [(list(a), x) for a, x in tail] == [(list(a), x) for a, x in
                                                   plan[edges.index(first):]]


def test_variable_bptt_draws_each_length_and_a_new_plan_each_epoch():
    cfg = TrainConfig(bptt=20, windows_per_call=1, variable_bptt=True)
    plans = [[T for _, T in train.epoch_calls(0, 100_000, cfg, e)] for e in range(2)]
    assert plans[0] != plans[1]
    counts = {T: plans[0].count(T) / len(plans[0]) for T in (10, 15, 20, 25)}
    assert abs(counts[10] - 0.05) < 0.02 and abs(counts[20] - 0.475) < 0.05
    assert abs(counts[15] - counts[25]) < 0.05


def test_variable_bptt_scales_each_calls_lr_by_its_length(tiny_corpus_dir):
    corpus = data.load_corpus(tiny_corpus_dir)
    mcfg = ModelConfig(vocab_size=len(corpus.vocab), embed_dim=8, hidden_dim=8, cell="rnn")
    cfg = TrainConfig(batch_size=2, bptt=10, lr=1.0, epochs=2, windows_per_call=1,
                      log_every=1, variable_bptt=True)
    train.fit(mcfg, cfg, corpus, tiny_corpus_dir / "run", echo=lambda s: None)
    lines = workdir.read_metrics(tiny_corpus_dir / "run")
    per_call = {round(l["lr"], 6) for l in lines if "train_loss" in l}
    assert per_call <= {0.5, 1.0, 1.5} and len(per_call) >= 2
    assert [l["lr"] for l in lines if "val_ppl" in l and "test_ppl" not in l] == [1.0, 1.0]


def test_tiny_model_learns_a_repetitive_corpus(tmp_path, repetitive_corpus):
    corpus = repetitive_corpus
    mcfg = ModelConfig(vocab_size=len(corpus.vocab), embed_dim=16, hidden_dim=16, cell="lstm")
    cfg = TrainConfig(batch_size=4, bptt=8, optimizer="adam", lr=0.02, clip=5.0, epochs=3)
    summary = train.fit(mcfg, cfg, corpus, tmp_path / "run", echo=lambda s: None)
    assert summary["val_ppl"] < 1.5 and summary["test_ppl"] < 1.5


def test_same_seed_gives_the_same_run(tiny_corpus_dir):
    corpus = data.load_corpus(tiny_corpus_dir)
    mcfg = ModelConfig(vocab_size=len(corpus.vocab), embed_dim=8, hidden_dim=8, cell="lstm",
                       dropout=0.3)
    cfg = TrainConfig(batch_size=2, bptt=5, lr=1.0, epochs=2, log_every=5, seed=3)

    def run(name):
        summary = train.fit(mcfg, cfg, corpus, tiny_corpus_dir / name, echo=lambda s: None)
        lines = workdir.read_metrics(tiny_corpus_dir / name)
        return summary["val_ppl"], [l["train_loss"] for l in lines if "train_loss" in l]

    first, second = run("a"), run("b")
    assert first == second and len(first[1]) >= 4


def test_max_steps_stops_training(tiny_corpus_dir):
    corpus = data.load_corpus(tiny_corpus_dir)
    mcfg = ModelConfig(vocab_size=len(corpus.vocab), embed_dim=8, hidden_dim=8, cell="rnn")
    cfg = TrainConfig(batch_size=2, bptt=5, epochs=5, max_steps=7, windows_per_call=3)
    assert train.fit(mcfg, cfg, corpus, tiny_corpus_dir / "run", echo=lambda s: None)[
        "steps"] == 7


def test_a_resumed_run_with_nothing_left_to_train_reports_valid_json(tiny_corpus_dir):
    corpus = data.load_corpus(tiny_corpus_dir)
    mcfg = ModelConfig(vocab_size=len(corpus.vocab), embed_dim=8, hidden_dim=8, cell="rnn")
    cfg = TrainConfig(batch_size=2, bptt=5, epochs=1)
    run = tiny_corpus_dir / "run"
    first = train.fit(mcfg, cfg, corpus, run, echo=lambda s: None)
    again = train.fit(mcfg, cfg, corpus, run, echo=lambda s: None)
    assert again["steps"] == first["steps"] and again["tokens_per_s"] is None
    assert again["test_ppl"] == first["test_ppl"]
    json.dumps(again, allow_nan=False)  # strict JSON: null, never NaN
    for line in (run / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in metrics.jsonl"))


@pytest.mark.parametrize("bad, message", [
    (dict(batch_size=0), "batch_size must be >= 1, got 0"),
    (dict(bptt=-1), "bptt must be >= 1, got -1"),
    (dict(optimizer="rmsprop"), "optimizer must be one of sgd, adam, ntasgd, got 'rmsprop'"),
    (dict(lr=0.0), r"lr must be in \(0, 10000\], got 0.0"),
    (dict(lr=float("nan")), r"lr must be a finite number, got nan"),
    (dict(clip=0.0), "clip must be > 0, got 0.0"),
    (dict(lr_decay=1.5), r"lr_decay must be in \(0, 1\], got 1.5"),
    (dict(max_steps=-2), "max_steps must be >= 0, got -2"),
    (dict(max_steps=20.5), "max_steps must be an integer, got 20.5"),
    (dict(keep=0), "keep must be >= 1, got 0"),
    (dict(seed=True), "seed must be an integer, got True"),
    (dict(on_nonfinite="ignore"), "on_nonfinite must be one of stop, skip, got 'ignore'"),
])
def test_train_config_rejects_bad_values(bad, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**bad)
