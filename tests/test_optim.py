"""The optimizers: injectable learning rate, NT-ASGD's iterate averaging and trigger."""
import jax
import pytest
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


# AWD-LSTM (main.py): at the end of epoch t, with best_val_loss the list of the EARLIER
# checks, switch when len(best_val_loss) > nonmono and val > min(best_val_loss[:-nonmono]).
# Each case: (history including the newest check, nonmono, whether it switches), by hand.
NT_CASES = [
    ([248.77, 236.10, 239.58], 1, False),  # the run: 248.77 (two back) was worse
    ([236.10, 248.77, 239.58], 1, True),   # the check two back was better
    ([200.0, 190.0], 1, False),            # only one earlier check: nothing is > 1 back
    ([200.0, 190.0, 195.0], 2, False),     # two earlier checks, none more than 2 back
    ([180.0, 190.0, 185.0, 186.0], 2, True),   # 186 > 180, the check three back
    ([190.0, 180.0, 185.0, 186.0], 2, False),  # 186 < 190, the only check > 2 back
    ([150.0, 140.0, 130.0, 120.0, 110.0, 100.0, 90.0], 5, False),  # still improving
    ([100.0, 140.0, 130.0, 120.0, 110.0, 105.0, 101.0], 5, True),  # worse than 100, 6 back
    ([100.0, 140.0, 130.0, 120.0, 110.0, 105.0, 100.0], 5, False),  # equal is not worse
]


@pytest.mark.parametrize("history, nonmono, switches", NT_CASES)
def test_nt_trigger_follows_awd_lstm(history, nonmono, switches):
    assert optim.should_start_averaging(history, nonmono) == switches


@settings(max_examples=30)
@given(st.lists(st.floats(1.0, 500.0), min_size=1, max_size=12), st.integers(1, 5))
def test_nt_trigger_never_fires_while_val_improves_nor_looks_at_the_last_nonmono(history, n):
    assert not optim.should_start_averaging(sorted(history, reverse=True), n)
    # the nonmono checks just before the newest cannot make it fire
    changed = history[:-1 - n] + [0.5] * min(n, len(history) - 1) + history[-1:]
    if len(history) > n + 1:
        assert optim.should_start_averaging(changed, n) == optim.should_start_averaging(
            history[:-1 - n] + [1e9] * n + history[-1:], n)


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
