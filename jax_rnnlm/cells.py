"""Recurrent cells: one init and one step function per cell.

Every cell keeps its weights as ``{"w_x": [D, G·H], "w_h": [H, G·H], "b": [G·H]}``
with the G gates concatenated on the last axis in PyTorch order:

  rnn  (G=1)  h_t = tanh(x_t w_x + h_{t-1} w_h + b)
  lstm (G=4)  gates i, f, g, o;  c_t = f·c_{t-1} + i·g,  h_t = o·tanh(c_t)
  gru  (G=3)  gates r, z, n;     n = tanh(x w_xn + b_n + r·(h w_hn + b_hn)),
              h_t = (1 - z)·n + z·h_{t-1}

The GRU has one extra bias ``b_hn`` [H] because PyTorch and Flax put the
candidate's recurrent bias inside the reset gate; with it the weights map
one-to-one onto ``torch.nn.GRU`` and ``flax.linen.GRUCell``.

A step takes the *already projected* input ``xw = x_t w_x + b`` (the layer
computes that for all T steps in one matmul), so the body of the time scan
does only ``h w_h`` and the nonlinearity. The carry is ``h`` [B, H] for rnn
and gru and the tuple ``(h, c)`` for lstm.

Every matmul goes through ``matmul``, whose ``dtype`` picks the operand
precision: float32, or bfloat16 operands with float32 accumulation (mixed
precision; params, carries and everything elementwise stay float32).
"""
import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class Cell(NamedTuple):
    gates: int                       # G: how many H-wide blocks w_x, w_h and b hold
    step: Callable                   # (p, carry, xw_BG, dtype="float32") -> (carry, h_BH)
    zero_carry: Callable             # (batch, hidden, dtype) -> carry


def init_cell(key, name, in_dim, hidden, scale):
    """Weights of one cell, uniform in [-scale, scale] (Zaremba et al. init).

    Returns {"w_x": [D, G·H], "w_h": [H, G·H], "b": [G·H]} (+ "b_hn": [H] for gru).
    """
    g = CELLS[name].gates
    k_x, k_h, k_b, k_n = jax.random.split(key, 4)
    uni = lambda k, shape: jax.random.uniform(k, shape, jnp.float32, -scale, scale)
    p = {"w_x": uni(k_x, (in_dim, g * hidden)),
         "w_h": uni(k_h, (hidden, g * hidden)),
         "b": uni(k_b, (g * hidden,))}
    if name == "gru":
        p["b_hn"] = uni(k_n, (hidden,))
    return p


def cell_name(p):
    """The cell a layer's params belong to, read off the shape of w_h [H, G·H]."""
    hidden, width = p["w_h"].shape
    for name, cell in CELLS.items():
        if cell.gates * hidden == width:
            return name
    raise ValueError(f"w_h has shape {p['w_h'].shape}: width is not 1, 3 or 4 times H")


def matmul(x, w, dtype="float32"):
    """x [..., K] @ w [K, M] -> float32 [..., M], with operands rounded to ``dtype``.

    float32 is the plain product. For bfloat16 the forward and both backward
    products take bf16 operands and accumulate in fp32 (a custom VJP, because
    autodiff of a mixed dot would multiply the fp32 cotangent in fp32); the
    gradients come back fp32, so scans accumulate them in fp32.
    """
    if jnp.dtype(dtype) == jnp.float32:
        return x @ w
    return _mixed_matmul(x, w, jnp.dtype(dtype).name)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _mixed_matmul(x, w, dtype):
    return _mixed_fwd(x, w, dtype)[0]


def _mixed_fwd(x, w, dtype):
    x_lo, w_lo = x.astype(dtype), w.astype(dtype)
    return jnp.matmul(x_lo, w_lo, preferred_element_type=jnp.float32), (x_lo, w_lo)


def _mixed_bwd(dtype, res, g):
    x_lo, w_lo = res
    g_lo = g.astype(dtype)
    # g @ w.T spelled as a contraction of g's last axis with w's second: XLA's CPU
    # backend keeps this a bf16 product, but upcasts the transposed-operand form to fp32.
    dx = jax.lax.dot_general(g_lo, w_lo, (((g.ndim - 1,), (1,)), ((), ())),
                             preferred_element_type=jnp.float32)
    dw = jnp.matmul(x_lo.reshape(-1, x_lo.shape[-1]).T, g_lo.reshape(-1, g_lo.shape[-1]),
                    preferred_element_type=jnp.float32)
    return dx, dw


_mixed_matmul.defvjp(_mixed_fwd, _mixed_bwd)


def rnn_step(p, h_BH, xw_BH, dtype="float32"):
    h_BH = jnp.tanh(xw_BH + matmul(h_BH, p["w_h"], dtype))
    return h_BH, h_BH


def lstm_step(p, carry, xw_B4H, dtype="float32"):
    h_BH, c_BH = carry
    i, f, g, o = jnp.split(xw_B4H + matmul(h_BH, p["w_h"], dtype), 4, axis=-1)
    c_BH = jax.nn.sigmoid(f) * c_BH + jax.nn.sigmoid(i) * jnp.tanh(g)
    h_BH = jax.nn.sigmoid(o) * jnp.tanh(c_BH)
    return (h_BH, c_BH), h_BH


def gru_step(p, h_BH, xw_B3H, dtype="float32"):
    hw_B3H = matmul(h_BH, p["w_h"], dtype)
    xr, xz, xn = jnp.split(xw_B3H, 3, axis=-1)
    hr, hz, hn = jnp.split(hw_B3H, 3, axis=-1)
    r = jax.nn.sigmoid(xr + hr)
    z = jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * (hn + p["b_hn"][None, :]))
    h_BH = (1.0 - z) * n + z * h_BH
    return h_BH, h_BH


def _zeros(batch, hidden, dtype):
    return jnp.zeros((batch, hidden), dtype)


def _zeros_pair(batch, hidden, dtype):
    return (_zeros(batch, hidden, dtype), _zeros(batch, hidden, dtype))


CELLS = {
    "rnn": Cell(1, rnn_step, _zeros),
    "lstm": Cell(4, lstm_step, _zeros_pair),
    "gru": Cell(3, gru_step, _zeros),
}
