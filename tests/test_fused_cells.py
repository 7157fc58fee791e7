"""The fused time step of the classic cells against their plain definitions, and the
number of ops their compiled time loops run per step (pinned)."""
import jax
import jax.numpy as jnp
import pytest
from hypothesis import given, settings, strategies as st

from jax_rnnlm import cells, fused_cells, layers
from jax_rnnlm.bench import ops
from support.trees import assert_trees_close

UPDATES = {"rnn": (cells.rnn_update, 1), "lstm": (cells.lstm_update, 4),
           "gru": (cells.gru_update, 3)}


def random_step(name, B, H, seed):
    """float64 (p, carry, xw [B, G·H], hw [B, G·H]) for one step of the named cell."""
    G = UPDATES[name][1]
    k = jax.random.split(jax.random.key(seed), 5)
    normal = lambda key, shape: jax.random.normal(key, shape, jnp.float64)  # noqa: E731
    carry = normal(k[0], (B, H))
    if name == "lstm":
        carry = (carry, normal(k[1], (B, H)))
    return ({"b_hn": normal(k[2], (H,))}, carry, normal(k[3], (B, G * H)),
            normal(k[4], (B, G * H)))


def fused_step(name, p, carry, xw, hw):
    G = UPDATES[name][1]
    hw_BGH = fused_cells.to_parts(hw, G)
    bias = fused_cells.recurrent_bias(name, p)
    if bias is not None:
        hw_BGH = hw_BGH + bias
    return fused_cells.FUSED[name].forward(fused_cells.to_parts(xw, G), hw_BGH, carry)


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("name", sorted(UPDATES))
@settings(max_examples=10, deadline=None)
@given(B=st.integers(1, 4), H=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_fused_forward_equals_the_cell_definition(name, B, H, seed):
    p, carry, xw, hw = random_step(name, B, H, seed)
    new, _ = fused_step(name, p, carry, xw, hw)
    assert_trees_close(new, UPDATES[name][0](p, carry, xw, hw), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(UPDATES))
@settings(max_examples=10, deadline=None)
@given(B=st.integers(1, 4), H=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_fused_backward_equals_autodiff_of_the_definition(name, B, H, seed):
    p, carry, xw, hw = random_step(name, B, H, seed)
    new, pullback = jax.vjp(lambda c, x, h: UPDATES[name][0](p, c, x, h), carry, xw, hw)
    dnew = jax.tree.map(lambda a: jnp.cos(3.0 * a + seed), new)   # any cotangent
    want_dprev, want_dxw, want_dhw = pullback(dnew)
    fused_new, saved = fused_step(name, p, carry, xw, hw)
    dprev, dxw, dhw = fused_cells.FUSED[name].backward(saved, carry, fused_new, dnew)
    dhw = dxw if dhw is None else dhw
    assert_trees_close((dprev, fused_cells.from_parts(dxw), fused_cells.from_parts(dhw)),
                       (want_dprev, want_dxw, want_dhw), rtol=1e-12, atol=1e-12)


def test_activation_pass_is_sigmoid_and_tanh_where_flagged():
    z = jnp.linspace(-30.0, 30.0, 2 * 3 * 7).reshape(2, 3, 7)
    a = fused_cells.activate(z, (False, True, False))
    assert_trees_close(a[:, 1], jnp.tanh(z[:, 1]), rtol=1e-14, atol=1e-14)
    assert_trees_close(a[:, 0::2], jax.nn.sigmoid(z[:, 0::2]), rtol=1e-14, atol=1e-14)


# Ops per layer and time step of the compiled time loops (forward + backward in training,
# the loop's body and condition, one layer; bench/ops.py), as of issue 24. Before it
# (the per-gate form): train rnn 16, lstm 27, gru 22 (fp32). A change that adds ops to a
# step fails here: lower the pin when a change removes some.
MAX_OPS = {("rnn", "train"): 12, ("lstm", "train"): 21, ("gru", "train"): 22,
           ("rnn", "eval"): 6, ("lstm", "eval"): 8, ("gru", "eval"): 6}


@pytest.mark.parametrize("name", sorted(UPDATES))
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_time_loop_ops_per_step_stay_within_the_pinned_count(name, dtype):
    with jax.enable_x64(False):
        T, B, D, H = 5, 3, 4, 6
        p = cells.init_cell(jax.random.key(0), name, D, H, 0.1)
        carry = cells.zero_carry(name, B, H)

        def loss(p, xs):
            hs, _ = layers.recurrent_layer(name, p, carry, xs, dtype=dtype)
            return jnp.sum(hs * hs)
        xs = jnp.ones((T, B, D))
        train = jax.jit(jax.grad(loss)).lower(p, xs).compile().as_text()
        evaluate = jax.jit(loss).lower(p, xs).compile().as_text()
    bf16_extra = 0 if dtype == "float32" else 2   # the rounding of h (and dhw) to bf16
    assert len(ops.loop_ops(train, T)) == 2 and len(ops.loop_ops(evaluate, T)) == 1
    assert ops.ops_per_layer_step(train, 1, T) <= MAX_OPS[name, "train"] + bf16_extra
    assert ops.ops_per_layer_step(evaluate, 1, T) <= MAX_OPS[name, "eval"] + bf16_extra // 2
