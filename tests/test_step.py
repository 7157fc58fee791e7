"""The pure train step: clipped SGD, windows per call, the window boundary through the
real step, the learning rate by name, evaluation scoring every target."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings, strategies as st

from jax_rnnlm import data, model, optim, step
from jax_rnnlm.config import ModelConfig
from support.trees import assert_trees_close


def tiny(cell="lstm", V=12, **kw):
    return ModelConfig(vocab_size=V, embed_dim=8, hidden_dim=8, num_layers=2, cell=cell,
                       init_scale=0.3, **kw)


def fresh(cfg, tx, batch_size, seed=0):
    return step.init_state(jax.random.key(seed), cfg, tx, batch_size)


@functools.cache
def two_windows(cell):
    """(cfg, tx, the library's jitted step over W windows, a jitted hand-built window step)."""
    cfg = tiny(cell)
    tx = optim.make_optimizer("sgd", 2.0, 1.0)

    @jax.jit
    def by_hand(params, opt_state, const_carry, x, y):
        (loss, carry), g = jax.value_and_grad(model.loss, has_aux=True)(params, cfg,
                                                                         const_carry, x, y)
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = tx.update(g, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, carry, loss
    return cfg, tx, step.jit_train_windows(cfg, tx, 5), by_hand


def test_w_windows_per_call_equal_w_single_calls():
    cfg = tiny(dropout=0.2)
    tx = optim.make_optimizer("sgd", 0.5, 1.0)
    streams = jnp.asarray(data.batchify(np.arange(60) % 12, 3))
    starts = jnp.arange(4) * 4
    run = step.jit_train_windows(cfg, tx, 4)
    many, metrics = run(fresh(cfg, tx, 3), streams, starts)
    state, single = fresh(cfg, tx, 3), []
    for s in starts:
        state, out = run(state, streams, s[None])
        single.append(out["loss"][0])
    np.testing.assert_allclose(metrics["loss"], single, rtol=1e-6)
    assert_trees_close(many, state, rtol=1e-6, atol=1e-7)


def test_train_step_is_clipped_sgd_and_carries_the_state_on():
    cfg = tiny("rnn")
    tx = optim.make_optimizer("sgd", 0.3, 0.01)
    state = fresh(cfg, tx, 2)
    x = jnp.array([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])
    y = (x + 1) % 12
    new, metrics = step.train_step(state, x, y, cfg=cfg, tx=tx)
    (ref_loss, ref_carry), grads = jax.value_and_grad(model.loss, has_aux=True)(
        state.params, cfg, state.carry, x, y)
    scale = min(1.0, 0.01 / float(optax.tree.norm(grads)))
    expected = jax.tree.map(lambda p, g: p - 0.3 * scale * g, state.params, grads)
    np.testing.assert_allclose(metrics["loss"], ref_loss, rtol=1e-6)
    assert_trees_close(new.params, expected, rtol=1e-5, atol=1e-7)
    assert_trees_close(new.carry, ref_carry, rtol=1e-6)
    assert int(new.step) == 1


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@settings(max_examples=3)
@given(seed=st.integers(0, 1000))
def test_train_windows_over_two_windows_equal_a_hand_built_reference(cell, seed):
    """Truncated BPTT through the real step: window 2's gradient is that of its own
    loss with the carry from window 1 passed in as a constant (numpy), so nothing
    flows back over the boundary, and the carry is not reset in between."""
    cfg, tx, run, by_hand = two_windows(cell)
    state0 = fresh(cfg, tx, 3, seed)
    streams = jax.random.randint(jax.random.key(seed + 1), (3, 11), 0, cfg.vocab_size)
    got, metrics = run(jax.tree.map(jnp.copy, state0), streams, jnp.array([0, 5], jnp.int32))

    params, opt_state, carry, losses = state0.params, state0.opt_state, state0.carry, []
    for start in (0, 5):
        x, y = streams[:, start:start + 5], streams[:, start + 1:start + 6]
        const = jax.tree.map(np.asarray, carry)  # a constant: no gradient can reach it
        params, opt_state, carry, loss = by_hand(params, opt_state, const, x, y)
        losses.append(loss)
    np.testing.assert_allclose(metrics["loss"], losses, rtol=1e-5)
    assert_trees_close((got.params, got.carry), (params, carry), rtol=1e-4, atol=1e-6)


def test_a_gradient_through_the_boundary_would_differ_from_the_truncated_one():
    """What the reference above can tell apart: for two windows, the sum of the two
    truncated gradients (carry passed in as a constant) is not the full-BPTT gradient."""
    cfg = tiny("lstm")
    state0 = fresh(cfg, optim.make_optimizer(), 3)
    streams = jax.random.randint(jax.random.key(1), (3, 11), 0, cfg.vocab_size)
    x, y = streams[:, :10], streams[:, 1:11]
    carry1 = jax.tree.map(np.asarray, model.loss(state0.params, cfg, state0.carry, x[:, :5],
                                                 y[:, :5])[1])
    cut = lambda p: (model.loss(p, cfg, state0.carry, x[:, :5], y[:, :5])[0]
                     + model.loss(p, cfg, carry1, x[:, 5:], y[:, 5:])[0])
    through = lambda p: 2 * model.loss(p, cfg, state0.carry, x, y)[0]
    w_h = lambda f: np.asarray(jax.jit(jax.grad(f))(state0.params)["layers"][0]["w_h"])
    assert np.abs(w_h(cut) - w_h(through)).max() > 1e-5


def test_learning_rate_is_read_and_set_by_name():
    state = optim.make_optimizer("adam", 2.0, 1.0).init({"w": jnp.zeros(3)})
    assert optim.learning_rate(state) == 2.0
    assert optim.learning_rate(optim.with_learning_rate(state, 0.5)) == 0.5


def test_a_bad_window_leaves_params_untouched():
    cfg = ModelConfig(vocab_size=6, embed_dim=4, hidden_dim=4, cell="rnn")
    tx = optim.make_optimizer()
    state = fresh(cfg, tx, 1)
    state = state.replace(params={**state.params,
                                  "embed": state.params["embed"].at[5].set(jnp.inf)})
    new, metrics = step.train_step(state, jnp.array([[1, 5, 2]]), jnp.array([[5, 2, 3]]),
                                   cfg=cfg, tx=tx)
    assert not bool(metrics["finite"][0])
    assert_trees_close((new.params, new.opt_state, new.carry),
                       (state.params, state.opt_state, state.carry), rtol=0)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_evaluate_scores_every_target_with_the_carry_flowing(batch_size):
    cfg = tiny()
    params = model.init_params(jax.random.key(0), cfg)
    ids = np.arange(47) * 5 % 12
    ppl, count = step.evaluate(params, cfg, ids, batch_size=batch_size, bptt=6)
    streams = data.batchify(ids, batch_size)
    ce, _ = model.token_losses(params, cfg, model.init_carry(cfg, batch_size),
                               jnp.asarray(streams[:, :-1]), jnp.asarray(streams[:, 1:]))
    assert count == ce.size == batch_size * (47 // batch_size - 1)
    np.testing.assert_allclose(ppl, math.exp(float(ce.mean())), rtol=1e-5)
    other_bptt, _ = step.evaluate(params, cfg, ids, batch_size=batch_size, bptt=35)
    np.testing.assert_allclose(ppl, other_bptt, rtol=1e-5)


def test_param_names_follow_the_leaves():
    cfg = tiny("gru")
    names = step.param_names(model.init_params(jax.random.key(0), cfg))
    assert names[:2] == ["embed", "layers/0/b"] and "layers/1/b_hn" in names
    assert len(names) == len(jax.tree.leaves(model.init_params(jax.random.key(0), cfg)))
