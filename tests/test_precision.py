"""Mixed precision: with dtype bfloat16 every matmul of the compiled program (forward,
the hand-written backward of the time loop, the output layer and its weight gradient)
takes bf16 operands; with float32 none does. Read off the lowered program, so a matmul
that silently falls back to fp32 fails here even when the numbers stay close."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_rnnlm import model, optim, precision, step
from jax_rnnlm.config import ModelConfig
from support.hlo import dot_operand_dtypes


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("tie", [False, True])
def test_bf16_train_step_has_only_bf16_matmuls(cell, tie):
    cfg = ModelConfig(vocab_size=11, embed_dim=6, hidden_dim=6, num_layers=2, cell=cell,
                      tie_weights=tie, dropout=0.2, dtype="bfloat16")
    tx = optim.make_optimizer("sgd", 1.0, 0.25)
    state = step.init_state(jax.random.key(0), cfg, tx, 3)
    streams = jnp.zeros((3, 9), jnp.int32)
    run = lambda s, x, w: step.train_windows(s, x, w, cfg=cfg, tx=tx, bptt=4)
    types = dot_operand_dtypes(run, state, streams, jnp.arange(2, dtype=jnp.int32) * 4)
    # forward: input projection and recurrent matmul per layer, output layer; backward:
    # d(input), d(w_x), d(h), d(w_h) per layer, d(h) and d(w_out) of the output layer
    assert len(types) >= 2 * 2 + 1 + 4 * 2 + 2
    assert all(t == ("bf16", "bf16") for t in types), types


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_float32_program_has_no_bf16(cell):
    cfg = ModelConfig(vocab_size=11, embed_dim=6, hidden_dim=6, cell=cell)
    params = model.init_params(jax.random.key(0), cfg)
    x = jnp.zeros((2, 4), jnp.int32)
    grad = jax.grad(lambda p: model.loss(p, cfg, model.init_carry(cfg, 2), x, x)[0])
    types = dot_operand_dtypes(grad, params)
    assert types and all(t == ("f32", "f32") for t in types), types


def test_mixed_matmul_gradients_are_the_bf16_products():
    """Both backward products round their operands to bf16 and return fp32."""
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    x, w, g = (jax.random.normal(k, s) for k, s in zip((k1, k2, k3), ((5, 7), (7, 3), (5, 3))))
    _, pullback = jax.vjp(lambda x, w: precision.matmul(x, w, "bfloat16"), x, w)
    dx, dw = pullback(g)
    lo = lambda a: np.asarray(a.astype(jnp.bfloat16).astype(jnp.float32), np.float64)
    assert dx.dtype == dw.dtype == jnp.float32
    np.testing.assert_allclose(dx, lo(g) @ lo(w).T, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dw, lo(x).T @ lo(g), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("I,O", [(5, 40), (5, 6)])  # with and without the transposed copy
def test_matmul_gradients_equal_the_products_they_stand_for(dtype, I, O):
    """Both sides of ``contract_rows`` (the identity-product copy of x.T for wide
    outputs, the direct contraction otherwise) give x.T @ g; dx is g @ w.T."""
    k1, k2, k3 = jax.random.split(jax.random.key(2), 3)
    x, w = jax.random.normal(k1, (3, 2, I)), jax.random.normal(k2, (I, O))
    g = jax.random.normal(k3, (3, 2, O))
    _, pullback = jax.vjp(lambda x, w: precision.matmul(x, w, dtype), x, w)
    dx, dw = pullback(g)
    r = (lambda a: np.asarray(a, np.float64)) if dtype == "float32" else (
        lambda a: np.asarray(a.astype(jnp.bfloat16).astype(jnp.float32), np.float64))
    assert dx.dtype == dw.dtype == jnp.float32
    np.testing.assert_allclose(dx, r(g) @ r(w).T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw, r(x).reshape(6, I).T @ r(g).reshape(6, O), rtol=1e-5,
                               atol=1e-5)
