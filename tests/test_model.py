"""Properties of the pure model functions: shapes, truncated windows, row independence,
jit, gradients vs finite differences, init loss, dropout, bf16."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jax_rnnlm import cells, model
from jax_rnnlm.config import ModelConfig
from support.gradcheck import check_gradient
from support.trees import assert_trees_close

CELL_NAMES = sorted(cells.CELLS)
# Compiled once per config and shape: one XLA program is faster to build than the
# op-by-op dispatch of an eager scan, and hypothesis draws few distinct shapes.
token_losses = jax.jit(model.token_losses, static_argnums=1)
forward = jax.jit(model.forward, static_argnums=1)


def make(cell, *, V=11, D=4, H=5, L=2, tie=False, seed=0, scale=0.5):
    cfg = ModelConfig(vocab_size=V, embed_dim=H if tie else D, hidden_dim=H, num_layers=L,
                      cell=cell, tie_weights=tie, init_scale=scale)
    return cfg, model.init_params(jax.random.key(seed), cfg)


def tokens(key, B, T, V):
    return jax.random.randint(key, (B, T), 0, V)


@pytest.mark.parametrize("cell", CELL_NAMES)
@settings(max_examples=6)
@given(B=st.integers(1, 4), T=st.integers(1, 7), V=st.integers(2, 13), L=st.integers(1, 3),
       tie=st.booleans())
def test_forward_shapes_and_dtypes(cell, B, T, V, L, tie):
    cfg, params = make(cell, V=V, L=L, tie=tie)
    carry = model.init_carry(cfg, B)
    logits, new_carry = forward(params, cfg, carry, tokens(jax.random.key(1), B, T, V))
    assert logits.shape == (B, T, V) and logits.dtype == jnp.float32
    assert jax.tree.structure(new_carry) == jax.tree.structure(carry)
    for leaf in jax.tree.leaves(new_carry):
        assert leaf.shape == (B, cfg.hidden_dim) and leaf.dtype == jnp.float32


@pytest.mark.parametrize("cell", CELL_NAMES)
@settings(max_examples=5)
@given(B=st.integers(1, 3), T=st.integers(1, 6), seed=st.integers(0, 1000))
def test_two_windows_with_carry_equal_one_long_window(cell, B, T, seed):
    cfg, params = make(cell, seed=seed)
    k1, k2 = jax.random.split(jax.random.key(seed + 1))
    x, y = tokens(k1, B, 2 * T, cfg.vocab_size), tokens(k2, B, 2 * T, cfg.vocab_size)
    carry = model.init_carry(cfg, B)
    long_ce, long_carry = token_losses(params, cfg, carry, x, y)
    ce1, c = token_losses(params, cfg, carry, x[:, :T], y[:, :T])
    ce2, c = token_losses(params, cfg, c, x[:, T:], y[:, T:])
    assert_trees_close((jnp.concatenate([ce1, ce2], axis=1), c), (long_ce, long_carry),
                       rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", CELL_NAMES)
@settings(max_examples=5)
@given(B=st.integers(2, 4), T=st.integers(1, 5), seed=st.integers(0, 1000), data=st.data())
def test_changing_one_row_changes_no_other_row(cell, B, T, seed, data):
    cfg, params = make(cell, seed=seed)
    j = data.draw(st.integers(0, B - 1))
    x = tokens(jax.random.key(seed), B, T, cfg.vocab_size)
    x2 = x.at[j].set((x[j] + 1) % cfg.vocab_size)
    carry = model.init_carry(cfg, B)
    out, _ = forward(params, cfg, carry, x)
    out2, _ = forward(params, cfg, carry, x2)
    others = np.arange(B) != j
    np.testing.assert_array_equal(out[others], out2[others])
    assert not np.allclose(out[j], out2[j])


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_jit_equals_no_jit(cell):
    cfg, params = make(cell)
    x = tokens(jax.random.key(3), 3, 6, cfg.vocab_size)
    carry = model.init_carry(cfg, 3)
    eager = model.loss(params, cfg, carry, x, x)
    compiled = jax.jit(model.loss, static_argnums=1)(params, cfg, carry, x, x)
    assert_trees_close(compiled, eager, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("tie", [False, True])
def test_gradient_equals_central_finite_differences_in_float64(cell, tie):
    """BPTT through the scan, one random direction per tensor: every weight is checked."""
    cfg, params = make(cell, tie=tie, scale=0.5)
    x = np.asarray(tokens(jax.random.key(5), 2, 6, cfg.vocab_size))
    y = np.asarray(tokens(jax.random.key(6), 2, 6, cfg.vocab_size))

    def f(p):
        carry = jax.tree.map(lambda z: z.astype(p["embed"].dtype), model.init_carry(cfg, 2))
        return model.loss(p, cfg, carry, x, y)[0]
    check_gradient(f, params, per_leaf=True, eps=1e-5)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_loss_at_init_is_near_log_vocab(cell):
    cfg = ModelConfig(vocab_size=1000, embed_dim=16, hidden_dim=16, cell=cell,
                      init_scale=0.05)
    params = model.init_params(jax.random.key(0), cfg)
    x = tokens(jax.random.key(1), 4, 10, cfg.vocab_size)
    value, _ = model.loss(params, cfg, model.init_carry(cfg, 4), x, x)
    assert abs(float(value) - math.log(1000)) < 0.05


def test_tied_weights_share_the_embedding():
    cfg, params = make("rnn", tie=True)
    assert "w" not in params["out"]
    np.testing.assert_array_equal(model.output_weight(params), params["embed"].T)
    g = jax.grad(lambda p: model.loss(p, cfg, model.init_carry(cfg, 1), jnp.array([[1, 2]]),
                                      jnp.array([[3, 4]]))[0])(params)
    assert float(jnp.abs(g["embed"][3:5]).sum()) > 0  # the output layer trains the embedding


def test_dropout_applies_exactly_when_a_key_is_given_and_the_rate_is_positive():
    cfg, params = make("lstm")
    cfg = ModelConfig(**{**cfg.__dict__, "dropout": 0.5})
    x = tokens(jax.random.key(0), 2, 4, cfg.vocab_size)
    carry = model.init_carry(cfg, 2)
    plain, _ = model.forward(params, cfg, carry, x)
    a, _ = model.forward(params, cfg, carry, x, jax.random.key(1))
    b, _ = model.forward(params, cfg, carry, x, jax.random.key(1))
    c, _ = model.forward(params, cfg, carry, x, jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(a, plain)
    no_rate = ModelConfig(**{**cfg.__dict__, "dropout": 0.0})
    keyed, _ = model.forward(params, no_rate, carry, x, jax.random.key(1))
    np.testing.assert_array_equal(keyed, plain)


@pytest.mark.parametrize("bad, message", [
    (dict(vocab_size=1), "vocab_size must be >= 2, got 1"),
    (dict(hidden_dim=-3), "hidden_dim must be >= 1, got -3"),
    (dict(num_layers=0), "num_layers must be >= 1, got 0"),
    (dict(num_layers=1.0), "num_layers must be an integer, got 1.0"),
    (dict(cell="transformer"), "cell must be one of rnn, lstm, gru, .*got 'transformer'"),
    (dict(variational="no"), "variational must be true or false, got 'no'"),
    (dict(init_scale=float("inf")), "init_scale must be a finite number"),
    (dict(dropout=1.0), r"dropout must be in \[0, 1\)"),
    (dict(dropout=-0.1), r"dropout must be in \[0, 1\)"),
    (dict(tie_weights=True, embed_dim=8, hidden_dim=16),
     "tie_weights needs embed_dim == the last layer's width"),
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
    bf16 = ModelConfig(**{**cfg.__dict__, "dtype": "bfloat16"})
    f = lambda p, c: model.loss(p, c, carry, x, x)[0]
    l32, g32 = jax.value_and_grad(f)(params, cfg)
    l16, g16 = jax.value_and_grad(f)(params, bf16)
    assert l16.dtype == jnp.float32 and abs(float(l16 - l32)) < 0.01 * float(l32)
    assert jax.tree.structure(g16) == jax.tree.structure(g32)
    for a, b in zip(jax.tree.leaves(g16), jax.tree.leaves(g32)):
        assert a.dtype == jnp.float32  # params and their gradients stay float32
        np.testing.assert_allclose(a, b, atol=0.03 * float(jnp.abs(b).max()) + 1e-6)
