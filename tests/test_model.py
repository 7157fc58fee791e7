"""Properties of the pure model functions: shapes, scan vs loop, truncated windows,
row independence, jit, gradients vs finite differences, init loss."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jax_rnnlm import cells, layers, model
from jax_rnnlm.model import ModelConfig

CELL_NAMES = sorted(cells.CELLS)


def make(cell, *, V=11, D=4, H=5, L=2, tie=False, seed=0, scale=0.5):
    cfg = ModelConfig(vocab_size=V, embed_dim=H if tie else D, hidden_dim=H, num_layers=L,
                      cell=cell, tie_weights=tie, init_scale=scale)
    return cfg, model.init_params(jax.random.key(seed), cfg)


def tokens(key, B, T, V):
    return jax.random.randint(key, (B, T), 0, V)


@pytest.mark.parametrize("cell", CELL_NAMES)
@settings(max_examples=6, deadline=None)
@given(B=st.integers(1, 4), T=st.integers(1, 7), V=st.integers(2, 13), L=st.integers(1, 3),
       tie=st.booleans())
def test_forward_shapes_and_dtypes(cell, B, T, V, L, tie):
    cfg, params = make(cell, V=V, L=L, tie=tie)
    carry = model.init_carry(cfg, B)
    logits, new_carry = model.forward(params, carry, tokens(jax.random.key(1), B, T, V))
    assert logits.shape == (B, T, V) and logits.dtype == jnp.float32
    assert jax.tree.structure(new_carry) == jax.tree.structure(carry)
    for leaf in jax.tree.leaves(new_carry):
        assert leaf.shape == (B, cfg.hidden_dim) and leaf.dtype == jnp.float32


@pytest.mark.parametrize("cell", CELL_NAMES)
@settings(max_examples=5, deadline=None)
@given(B=st.integers(1, 3), T=st.integers(1, 6), seed=st.integers(0, 1000))
def test_scan_layer_equals_explicit_loop_of_steps(cell, B, T, seed):
    k_p, k_x = jax.random.split(jax.random.key(seed))
    p = cells.init_cell(k_p, cell, 3, 4, scale=0.5)
    xs = jax.random.normal(k_x, (T, B, 3))
    carry0 = cells.CELLS[cell].zero_carry(B, 4, jnp.float32)
    hs, carry = layers.recurrent_layer(p, carry0, xs)
    c, outs = carry0, []
    for t in range(T):  # per-step input projection, no hoisting, no scan
        c, h = cells.CELLS[cell].step(p, c, xs[t] @ p["w_x"] + p["b"][None, :])
        outs.append(h)
    np.testing.assert_allclose(hs, jnp.stack(outs), rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(carry), jax.tree.leaves(c)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", CELL_NAMES)
@settings(max_examples=4, deadline=None)
@given(B=st.integers(1, 3), T=st.integers(1, 6), seed=st.integers(0, 1000),
       dtype=st.sampled_from(["float32", "bfloat16"]))
def test_layer_backward_equals_autodiff_of_a_loop_of_steps(cell, B, T, seed, dtype):
    """The hand-written backward pass of the time scan against jax.grad of a plain
    Python loop of Cell.step, for every input: weights, gru's b_hn, carry, xs.
    float32 in float64; bfloat16 (rounded operands in both) to bf16 precision."""
    ks = jax.random.split(jax.random.key(seed), 5)
    p = cells.init_cell(ks[0], cell, 3, 4, scale=0.5)
    xs = jax.random.normal(ks[1], (T, B, 3))
    carry0 = jax.tree.map(lambda z: jax.random.normal(ks[2], z.shape),
                          cells.CELLS[cell].zero_carry(B, 4, jnp.float32))
    w_hs, w_c = jax.random.normal(ks[3], (T, B, 4)), jax.random.normal(ks[4], (B, 4))

    def objective(hs, carry):  # weights every output and the final carry's leaves
        return (jnp.sum(hs * w_hs.astype(hs.dtype))
                + sum(jnp.sum(c * w_c.astype(c.dtype)) for c in jax.tree.leaves(carry)))

    def by_layer(p, carry, xs):
        return objective(*layers.recurrent_layer(p, carry, xs, dtype=dtype))

    def by_loop(p, carry, xs):
        c, outs = carry, []
        for t in range(T):
            c, h = cells.CELLS[cell].step(p, c, layers.affine(xs[t], p["w_x"], p["b"], dtype),
                                          dtype)
            outs.append(h)
        return objective(jnp.stack(outs), c)

    args = (p, carry0, xs)
    if dtype == "float32":
        args = jax.tree.map(lambda a: np.asarray(a, np.float64), args)
    with jax.enable_x64(dtype == "float32"):
        got = jax.grad(by_layer, argnums=(0, 1, 2))(*args)
        want = jax.grad(by_loop, argnums=(0, 1, 2))(*args)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float32" else dict(rtol=2e-2, atol=2e-2)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), **tol)


@pytest.mark.parametrize("cell", CELL_NAMES)
@settings(max_examples=5, deadline=None)
@given(B=st.integers(1, 3), T=st.integers(1, 6), seed=st.integers(0, 1000))
def test_two_windows_with_carry_equal_one_long_window(cell, B, T, seed):
    cfg, params = make(cell, seed=seed)
    k1, k2 = jax.random.split(jax.random.key(seed + 1))
    x, y = tokens(k1, B, 2 * T, cfg.vocab_size), tokens(k2, B, 2 * T, cfg.vocab_size)
    carry = model.init_carry(cfg, B)
    long_ce, long_carry = model.token_losses(params, carry, x, y)
    ce1, c = model.token_losses(params, carry, x[:, :T], y[:, :T])
    ce2, c = model.token_losses(params, c, x[:, T:], y[:, T:])
    np.testing.assert_allclose(jnp.concatenate([ce1, ce2], axis=1), long_ce, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(c), jax.tree.leaves(long_carry)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", CELL_NAMES)
@settings(max_examples=5, deadline=None)
@given(B=st.integers(2, 4), T=st.integers(1, 5), seed=st.integers(0, 1000), data=st.data())
def test_changing_one_row_changes_no_other_row(cell, B, T, seed, data):
    cfg, params = make(cell, seed=seed)
    j = data.draw(st.integers(0, B - 1))
    x = tokens(jax.random.key(seed), B, T, cfg.vocab_size)
    x2 = x.at[j].set((x[j] + 1) % cfg.vocab_size)
    carry = model.init_carry(cfg, B)
    out, _ = model.forward(params, carry, x)
    out2, _ = model.forward(params, carry, x2)
    others = np.arange(B) != j
    np.testing.assert_array_equal(out[others], out2[others])
    assert not np.allclose(out[j], out2[j])


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_jit_equals_no_jit(cell):
    cfg, params = make(cell)
    x = tokens(jax.random.key(3), 3, 6, cfg.vocab_size)
    carry = model.init_carry(cfg, 3)
    eager, _ = model.loss(params, carry, x, x)
    compiled, _ = jax.jit(model.loss)(params, carry, x, x)
    np.testing.assert_allclose(eager, compiled, rtol=1e-6)


def to64(tree):
    return jax.tree.map(lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a, tree)


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("tie", [False, True])
def test_gradient_equals_central_finite_differences_in_float64(cell, tie):
    """BPTT through the scan: <grad, v> against (L(p + eps v) - L(p - eps v)) / (2 eps)."""
    with jax.enable_x64(True):
        cfg, params = make(cell, tie=tie, scale=0.5)
        params = to64(params)
        x = tokens(jax.random.key(5), 2, 6, cfg.vocab_size)
        y = tokens(jax.random.key(6), 2, 6, cfg.vocab_size)
        carry = to64(model.init_carry(cfg, 2))
        f = lambda p: model.loss(p, carry, x, y)[0]
        grads = jax.grad(f)(params)
        leaves, treedef = jax.tree.flatten(params)
        keys = jax.random.split(jax.random.key(7), len(leaves))
        for i in range(len(leaves)):  # one direction per tensor: every weight is checked
            v = [jnp.zeros_like(a) for a in leaves]
            v[i] = jax.random.normal(keys[i], leaves[i].shape, jnp.float64)
            v = jax.tree.unflatten(treedef, v)
            eps = 1e-5
            shift = lambda s: jax.tree.map(lambda a, d: a + s * eps * d, params, v)
            fd = (f(shift(1.0)) - f(shift(-1.0))) / (2 * eps)
            analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grads),
                                                          jax.tree.leaves(v)))
            np.testing.assert_allclose(analytic, fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_loss_at_init_is_near_log_vocab(cell):
    cfg = ModelConfig(vocab_size=1000, embed_dim=16, hidden_dim=16, cell=cell,
                      init_scale=0.05)
    params = model.init_params(jax.random.key(0), cfg)
    x = tokens(jax.random.key(1), 4, 10, cfg.vocab_size)
    value, _ = model.loss(params, model.init_carry(cfg, 4), x, x)
    assert abs(float(value) - math.log(1000)) < 0.05


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


def test_cross_entropy_is_stable_for_huge_logits():
    logits = jnp.array([[1e4, 0.0, -1e4]])
    ce = layers.softmax_cross_entropy(logits, jnp.array([1]))
    np.testing.assert_allclose(ce, [1e4], rtol=1e-6)


def test_tied_weights_share_the_embedding():
    cfg, params = make("rnn", tie=True)
    assert "w" not in params["out"]
    np.testing.assert_array_equal(model.output_weight(params), params["embed"].T)


def test_dropout_only_in_training_and_only_with_a_key():
    cfg, params = make("lstm")
    x = tokens(jax.random.key(0), 2, 4, cfg.vocab_size)
    carry = model.init_carry(cfg, 2)
    plain, _ = model.forward(params, carry, x)
    evald, _ = model.forward(params, carry, x, dropout=0.5, key=jax.random.key(1))
    np.testing.assert_array_equal(plain, evald)
    a, _ = model.forward(params, carry, x, train=True, dropout=0.5, key=jax.random.key(1))
    b, _ = model.forward(params, carry, x, train=True, dropout=0.5, key=jax.random.key(1))
    c, _ = model.forward(params, carry, x, train=True, dropout=0.5, key=jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(a, plain)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        model.forward(params, carry, x, train=True, dropout=0.5)


def test_dropout_keeps_the_mean():
    x = jnp.ones((200, 500))
    kept = layers.dropout(jax.random.key(0), x, 0.3)
    assert abs(float(kept.mean()) - 1.0) < 0.01
    assert abs(float((kept == 0).mean()) - 0.3) < 0.01


@pytest.mark.parametrize("bad, message", [
    (dict(vocab_size=0), "vocab_size must be a positive integer"),
    (dict(hidden_dim=-3), "hidden_dim must be a positive integer"),
    (dict(num_layers=0), "num_layers must be a positive integer"),
    (dict(cell="transformer"), "unknown cell 'transformer'"),
    (dict(dropout=1.0), r"dropout must be in \[0, 1\)"),
    (dict(dropout=-0.1), r"dropout must be in \[0, 1\)"),
    (dict(tie_weights=True, embed_dim=8, hidden_dim=16), "tie_weights needs embed_dim == hidden_dim"),
    (dict(init_scale=0.0), "init_scale must be > 0"),
])
def test_model_config_rejects_bad_values(bad, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{"vocab_size": 10, **bad})


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_bfloat16_matmuls_stay_close_to_float32(cell):
    cfg, params = make(cell, V=50, D=16, H=16)
    x = tokens(jax.random.key(2), 3, 6, 50)
    carry = model.init_carry(cfg, 3)
    f = lambda p, dtype: model.loss(p, carry, x, x, dtype=dtype)[0]
    l32, g32 = jax.value_and_grad(f)(params, "float32")
    l16, g16 = jax.value_and_grad(f)(params, "bfloat16")
    assert l16.dtype == jnp.float32 and abs(float(l16 - l32)) < 0.01 * float(l32)
    for a, b in zip(jax.tree.leaves(g16), jax.tree.leaves(g32)):
        assert a.dtype == jnp.float32  # params and their gradients stay float32
        np.testing.assert_allclose(a, b, atol=0.03 * float(jnp.abs(b).max()) + 1e-6)
