"""The recurrent layer over a window (scan vs an explicit loop, the hand-written backward
vs autodiff, masks), the fused output cross-entropy, dropout."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jax_rnnlm import cells, layers, time_loop
from support.trees import assert_trees_close

CELL_NAMES = sorted(n for n, c in cells.CELLS.items() if not c.parallel)  # the classic ones


def loop_of_steps(cell, p, carry, xs_TBD, dtype="float32", mask_TB=None):
    """The layer written plainly: per-step input projection, a Python loop of Cell.step,
    the mask applied by hand (keep the carry, output zeros). (hs_TBH, carry)."""
    c, outs = carry, []
    for t in range(xs_TBD.shape[0]):
        new, h = cells.CELLS[cell].step(p, c, xs_TBD[t], dtype)
        if mask_TB is not None:
            new = time_loop.keep_where(mask_TB[t], new, c)
            h = jnp.where(mask_TB[t][:, None], h, 0.0)
        c = new
        outs.append(h)
    return jnp.stack(outs), c


@pytest.mark.parametrize("cell", CELL_NAMES)
@settings(max_examples=5)
@given(B=st.integers(1, 3), T=st.integers(1, 6), seed=st.integers(0, 1000))
def test_scan_layer_equals_explicit_loop_of_steps(cell, B, T, seed):
    k_p, k_x = jax.random.split(jax.random.key(seed))
    p = cells.init_cell(k_p, cell, 3, 4, scale=0.5)
    xs = jax.random.normal(k_x, (T, B, 3))
    carry0 = cells.zero_carry(cell, B, 4)
    assert_trees_close(layers.recurrent_layer(cell, p, carry0, xs), loop_of_steps(cell, p, carry0, xs),
                       rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", CELL_NAMES)
@settings(max_examples=4)
@given(B=st.integers(1, 3), T=st.integers(1, 6), seed=st.integers(0, 1000),
       dtype=st.sampled_from(["float32", "bfloat16"]), masked=st.booleans())
def test_layer_backward_equals_autodiff_of_a_loop_of_steps(cell, B, T, seed, dtype, masked):
    """The hand-written backward pass of the time scan against jax.grad of a plain
    Python loop of Cell.step, for every input: weights, gru's b_hn, carry, xs; with
    and without a padding mask. float32 in float64; bfloat16 (rounded operands in
    both) to bf16 precision."""
    ks = jax.random.split(jax.random.key(seed), 6)
    p = cells.init_cell(ks[0], cell, 3, 4, scale=0.5)
    xs = jax.random.normal(ks[1], (T, B, 3))
    carry0 = jax.tree.map(lambda z: jax.random.normal(ks[2], z.shape), cells.zero_carry(cell, B, 4))
    w_hs, w_c = jax.random.normal(ks[3], (T, B, 4)), jax.random.normal(ks[4], (B, 4))
    lengths = jax.random.randint(ks[5], (B,), 0, T + 1)
    mask = layers.length_mask(lengths, T).T if masked else None

    def objective(hs, carry):  # weights every output and the final carry's leaves
        return (jnp.sum(hs * w_hs.astype(hs.dtype))
                + sum(jnp.sum(c * w_c.astype(c.dtype)) for c in jax.tree.leaves(carry)))

    def by_layer(p, carry, xs):
        return objective(*layers.recurrent_layer(cell, p, carry, xs, mask, dtype=dtype))

    def by_loop(p, carry, xs):
        return objective(*loop_of_steps(cell, p, carry, xs, dtype, mask))

    args = (p, carry0, xs)
    if dtype == "float32":
        args = jax.tree.map(lambda a: np.asarray(a, np.float64), args)
    with jax.enable_x64(dtype == "float32"):  # compiled: faster than eager op-by-op
        got = jax.jit(jax.grad(by_layer, argnums=(0, 1, 2)))(*args)
        want = jax.jit(jax.grad(by_loop, argnums=(0, 1, 2)))(*args)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float32" else dict(rtol=2e-2, atol=2e-2)
    assert_trees_close(got, want, **tol)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_all_true_mask_equals_the_unmasked_layer(cell):
    p = cells.init_cell(jax.random.key(0), cell, 3, 4, scale=0.5)
    xs = jax.random.normal(jax.random.key(1), (5, 3, 3))
    c0 = cells.zero_carry(cell, 3, 4)
    assert_trees_close(layers.recurrent_layer(cell, p, c0, xs, jnp.ones((5, 3), bool)),
                       layers.recurrent_layer(cell, p, c0, xs), rtol=1e-6, atol=1e-7)


def test_fused_affine_cross_entropy_equals_softmax_of_logits():
    k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
    h, w = jax.random.normal(k1, (7, 5)), jax.random.normal(k2, (5, 9))
    b, t = jax.random.normal(k3, (9,)), jax.random.randint(k4, (7,), 0, 9)
    fused = layers.affine_cross_entropy(h, w, b, t)
    plain = layers.softmax_cross_entropy(layers.affine(h, w, b), t)
    np.testing.assert_allclose(fused, plain, rtol=1e-5)
    g_fused = jax.grad(lambda w: layers.affine_cross_entropy(h, w, b, t).sum())(w)
    g_plain = jax.grad(lambda w: layers.softmax_cross_entropy(layers.affine(h, w, b), t).sum())(w)
    np.testing.assert_allclose(g_fused, g_plain, rtol=1e-5, atol=1e-6)


def test_bf16_fused_cross_entropy_rounds_its_target_logit_like_the_matmul():
    """In bf16 the gathered target logit must see the same rounded h and w as the output
    matmul: then the fused loss equals the plain one of bf16 logits, to fp32 rounding,
    and is never below zero. Dropping the rounding leaves a bf16-sized mismatch."""
    k1, k2, k3, k4 = jax.random.split(jax.random.key(3), 4)
    h, w = jax.random.normal(k1, (64, 32)), jax.random.normal(k2, (32, 50))
    b, t = jax.random.normal(k3, (50,)), jax.random.randint(k4, (64,), 0, 50)
    fused = layers.affine_cross_entropy(h, w, b, t, "bfloat16")
    plain = layers.softmax_cross_entropy(layers.affine(h, w, b, "bfloat16"), t)
    np.testing.assert_allclose(fused, plain, rtol=0, atol=2e-5)
    logits = layers.affine(h, w, b, "bfloat16")
    unrounded = (jax.nn.logsumexp(logits, axis=-1) - jnp.sum(h * w[:, t].T, axis=-1) - b[t])
    assert float(jnp.max(jnp.abs(unrounded - plain))) > 1e-3  # what the rounding removes


def test_cross_entropy_is_stable_for_huge_logits():
    logits = jnp.array([[1e4, 0.0, -1e4]])
    ce = layers.softmax_cross_entropy(logits, jnp.array([1]))
    np.testing.assert_allclose(ce, [1e4], rtol=1e-6)


def test_dropout_keeps_the_mean():
    x = jnp.ones((200, 500))
    kept = layers.dropout(jax.random.key(0), x, 0.3)
    assert abs(float(kept.mean()) - 1.0) < 0.01
    assert abs(float((kept == 0).mean()) - 0.3) < 0.01
    assert layers.dropout(None, x, 0.3) is x
