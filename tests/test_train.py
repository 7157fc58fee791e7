"""Training: the step, windows per call, schedules, evaluation convention, determinism."""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jax_rnnlm import data, model, train
from jax_rnnlm.model import ModelConfig
from jax_rnnlm.train import TrainConfig


def tiny(cell="lstm", V=12, **kw):
    return ModelConfig(vocab_size=V, embed_dim=8, hidden_dim=8, num_layers=2, cell=cell,
                       init_scale=0.3, **kw)


def test_k_windows_per_call_equal_k_single_steps():
    mcfg = tiny(dropout=0.2)
    cfg = TrainConfig(batch_size=3, bptt=4, lr=0.5, clip=1.0)
    tx = train.make_optimizer(cfg)
    streams = jnp.asarray(data.batchify(np.arange(60) % 12, 3))
    starts = jnp.arange(4) * 4
    many, metrics = train.make_train_windows(tx, 0.2, 4)(
        train.init_state(mcfg, cfg, tx), streams, starts)
    one_at_a_time = train.make_train_windows(tx, 0.2, 4)
    state = train.init_state(mcfg, cfg, tx)
    single = []
    for s in starts:
        state, out = one_at_a_time(state, streams, s[None])
        single.append(out["loss"][0])
    np.testing.assert_allclose(metrics["loss"], single, rtol=1e-6)
    for a, b in zip(plain_leaves(many), plain_leaves(state)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def plain_leaves(state):
    """Every array of a TrainState, the PRNG key as its raw uint32 data."""
    return jax.tree.leaves(state.replace(key=jax.random.key_data(state.key)))


def test_train_step_is_clipped_sgd_and_carries_the_state_on():
    mcfg = tiny("rnn")
    cfg = TrainConfig(batch_size=2, bptt=5, lr=0.3, clip=0.01)
    tx = train.make_optimizer(cfg)
    state = train.init_state(mcfg, cfg, tx)
    x = jnp.array([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])
    y = (x + 1) % 12
    new, metrics = train.train_step(state, x, y, tx=tx, dropout=0.0)
    loss = metrics["loss"]
    (ref_loss, ref_carry), grads = jax.value_and_grad(model.loss, has_aux=True)(
        state.params, state.carry, x, y)
    scale = min(1.0, 0.01 / float(optax.tree.norm(grads)))
    expected = jax.tree.map(lambda p, g: p - 0.3 * scale * g, state.params, grads)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    for a, b in zip(jax.tree.leaves(new.carry), jax.tree.leaves(ref_carry)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert int(new.step) == 1


def test_gradient_stops_at_the_window_boundary():
    mcfg = tiny("gru")
    cfg = TrainConfig(batch_size=2, bptt=3)
    tx = train.make_optimizer(cfg)
    state = train.init_state(mcfg, cfg, tx)
    x = jnp.array([[1, 2, 3], [4, 5, 6]])
    state, _ = train.train_step(state, x, x, tx=tx, dropout=0.0)
    # The carry entering the next window is a constant: the loss has no gradient w.r.t. it.
    g = jax.grad(lambda c: train.train_step(state.replace(carry=c), x, x, tx=tx,
                                            dropout=0.0)[1]["loss"])(state.carry)
    assert all(float(jnp.abs(leaf).max()) > 0 for leaf in jax.tree.leaves(g))
    stopped = jax.grad(lambda c: model.loss(state.params, jax.lax.stop_gradient(c), x, x)[0])(
        state.carry)
    assert all(float(jnp.abs(leaf).max()) == 0 for leaf in jax.tree.leaves(stopped))


def test_zaremba_schedule_halves_after_epoch_four():
    cfg = TrainConfig(lr=20.0, lr_decay=0.5, decay_after=4)
    assert [train.epoch_lr(cfg, e) for e in range(7)] == [20, 20, 20, 20, 10, 5, 2.5]


def test_plateau_rule_divides_by_four_when_val_does_not_improve():
    best, scale = train.plateau_update(math.inf, 150.0, 1.0, 0.25)
    assert (best, scale) == (150.0, 1.0)
    best, scale = train.plateau_update(best, 151.0, scale, 0.25)
    assert (best, scale) == (150.0, 0.25)
    assert train.plateau_update(best, 120.0, scale, 0.25) == (120.0, 0.25)


def test_lr_lives_in_the_optimizer_state():
    cfg = TrainConfig(lr=2.0)
    state = train.make_optimizer(cfg).init({"w": jnp.zeros(3)})
    assert train.current_lr(train.with_lr(state, 0.5)) == 0.5


@pytest.mark.parametrize("batch_size", [1, 3])
def test_evaluate_scores_every_target_with_the_carry_flowing(batch_size):
    mcfg = tiny()
    params = model.init_params(jax.random.key(0), mcfg)
    ids = np.arange(47) * 5 % 12
    ppl, count = train.evaluate(params, mcfg, ids, batch_size=batch_size, bptt=6)
    streams = data.batchify(ids, batch_size)
    ce, _ = model.token_losses(params, model.init_carry(mcfg, batch_size),
                               jnp.asarray(streams[:, :-1]), jnp.asarray(streams[:, 1:]))
    assert count == ce.size == batch_size * (47 // batch_size - 1)
    np.testing.assert_allclose(ppl, math.exp(float(ce.mean())), rtol=1e-5)
    other_bptt, _ = train.evaluate(params, mcfg, ids, batch_size=batch_size, bptt=35)
    np.testing.assert_allclose(ppl, other_bptt, rtol=1e-5)


def test_tiny_model_learns_a_repetitive_corpus(tmp_path):
    text = "a b c d e f g h\n" * 300
    for split in data.SPLITS:
        (tmp_path / f"{split}.txt").write_text(text)
    corpus = data.load_corpus(tmp_path)
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
        lines = [json.loads(l) for l in (tiny_corpus_dir / name / "metrics.jsonl").open()]
        return summary["val_ppl"], [l["train_loss"] for l in lines if "train_loss" in l]

    first, second = run("a"), run("b")
    assert first == second and len(first[1]) >= 4


def test_max_steps_stops_training(tiny_corpus_dir):
    corpus = data.load_corpus(tiny_corpus_dir)
    mcfg = ModelConfig(vocab_size=len(corpus.vocab), embed_dim=8, hidden_dim=8, cell="rnn")
    cfg = TrainConfig(batch_size=2, bptt=5, epochs=5, max_steps=7, windows_per_call=3)
    assert train.fit(mcfg, cfg, corpus, tiny_corpus_dir / "run", echo=lambda s: None)[
        "steps"] == 7


@pytest.mark.parametrize("bad, message", [
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(bptt=-1), "bptt must be a positive integer"),
    (dict(optimizer="rmsprop"), "unknown optimizer 'rmsprop'"),
    (dict(lr=0.0), r"lr must be in \(0, 1e4\]"),
    (dict(lr=float("nan")), r"lr must be in"),
    (dict(clip=0.0), "clip must be > 0"),
    (dict(lr_decay=1.5), "lr_decay and plateau_factor must be in"),
    (dict(max_steps=-2), "max_steps, decay_after and save_every must be >= 0"),
    (dict(keep=0), "keep must be at least 1"),
    (dict(on_nonfinite="ignore"), "on_nonfinite must be 'stop' or 'skip'"),
])
def test_train_config_rejects_bad_values(bad, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**bad)
