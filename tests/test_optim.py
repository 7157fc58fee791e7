"""The optimizers: injectable learning rate, NT-ASGD's iterate averaging and trigger."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
from hypothesis import given, settings, strategies as st

from jax_rnnlm import checkpoint, optim, step
from jax_rnnlm.config import ModelConfig
from support.trees import assert_trees_equal


def run_sgd(n_steps, switch_at, lr=0.1):
    """ntasgd on a quadratic; averaging switched on after ``switch_at`` steps.
    (iterates after each step, final params, final opt state)."""
    tx = optim.make_optimizer("ntasgd", lr, clip=1e3)
    params = {"w": jnp.array([3.0, -2.0]), "b": jnp.array(1.0)}
    state, iterates = tx.init(params), []
    for i in range(n_steps):
        if i == switch_at:
            state = optim.start_averaging(state)
        grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2) + p["b"] ** 4)(params)
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        iterates.append(params)
    return iterates, params, state


@settings(max_examples=8)
@given(n=st.integers(2, 12), data=st.data())
def test_average_is_the_mean_of_the_iterates_since_the_switch(n, data):
    switch = data.draw(st.integers(1, n - 1))
    iterates, _, state = run_sgd(n, switch)
    assert optim.is_averaging(state)
    for name in ("w", "b"):  # the iterate at the switch, and every one after it
        expected = np.mean([np.asarray(p[name], np.float64) for p in iterates[switch - 1:]],
                           axis=0)
        np.testing.assert_allclose(optim.eval_params(None, state)[name], expected, rtol=1e-6)


def test_before_the_switch_the_params_are_evaluated():
    _, params, state = run_sgd(5, switch_at=99)
    assert not optim.is_averaging(state)
    assert optim.eval_params(params, state) is params
    assert_trees_equal(state.avg, params)


def test_the_learning_rate_is_injectable_through_the_average():
    state = optim.make_optimizer("ntasgd", 30.0).init({"w": jnp.zeros(3)})
    assert optim.learning_rate(state) == 30.0
    assert optim.learning_rate(optim.with_learning_rate(state, 7.5)) == 7.5


@settings(max_examples=20)
@given(st.lists(st.floats(1.0, 500.0), min_size=1, max_size=12), st.integers(1, 5))
def test_nt_trigger_fires_exactly_when_val_is_worse_than_the_best_older_check(history, n):
    expected = len(history) > n and history[-1] > min(history[:-n])
    assert optim.should_start_averaging(history, n) == expected
    decreasing = sorted(history, reverse=True)
    assert not optim.should_start_averaging(decreasing, n)


def test_averaged_state_round_trips_through_a_checkpoint(tmp_path):
    cfg = ModelConfig(vocab_size=7, embed_dim=3, hidden_dim=4)
    tx = optim.make_optimizer("ntasgd", 0.5)
    state = step.init_state(jax.random.key(0), cfg, tx, 2)
    opt_state = optim.start_averaging(state.opt_state)
    grads = jax.tree.map(jnp.ones_like, state.params)
    for _ in range(3):
        updates, opt_state = tx.update(grads, opt_state, state.params)
        state = state.replace(params=optax.apply_updates(state.params, updates),
                              opt_state=opt_state, step=state.step + 1)
    with checkpoint.Checkpoints(tmp_path) as ck:
        ck.save(state, {"epoch": 0})
        restored, _ = ck.restore(step.init_state(jax.random.key(1), cfg, tx, 2))
    assert_trees_equal(restored, state)
    assert optim.is_averaging(restored.opt_state) and int(restored.opt_state.count) == 3


def test_weight_decay_adds_wd_times_the_params_after_clipping():
    """A zero gradient still shrinks the params by lr·wd; clipping does not touch the
    decay term (PyTorch SGD's order, which AWD-LSTM's settings assume)."""
    params = {"w": jnp.array([2.0, -4.0])}
    tx = optim.make_optimizer("sgd", lr=0.5, clip=1e-6, weight_decay=0.1)
    updates, _ = tx.update({"w": jnp.zeros(2)}, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], -0.5 * 0.1 * params["w"], rtol=1e-6)
