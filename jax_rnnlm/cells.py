"""Recurrent cells: one init and one update function per cell.

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
does only ``hw = h w_h`` and the nonlinearity. The nonlinearity is the cell's
``update(p, carry, xw, hw)``; ``Cell.step`` puts the two together. Keeping
them apart lets the layer's backward pass (``layers.recurrent_layer``) form
the gradient of ``w_h`` in one matmul after the time loop. The carry is ``h``
[B, H] for rnn and gru and the tuple ``(h, c)`` for lstm.

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
    update: Callable                 # (p, carry, xw_BG, hw_BG) -> carry: the nonlinearity
    zero_carry: Callable             # (batch, hidden, dtype) -> carry

    def step(self, p, carry, xw_BG, dtype="float32"):
        """One time step: (carry, h [B, H]); ``hw = h_{t-1} w_h`` is its only matmul."""
        carry = self.update(p, carry, xw_BG, matmul(hidden(carry), p["w_h"], dtype))
        return carry, hidden(carry)


def hidden(carry):
    """The h [B, H] of a carry: the carry itself, or the first of lstm's (h, c)."""
    return carry[0] if isinstance(carry, tuple) else carry


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
    dx = contract(g, w_lo, g.ndim - 1, 1, dtype)
    dw = contract(x_lo.reshape(-1, x_lo.shape[-1]), g.reshape(-1, g.shape[-1]), 0, 0, dtype)
    return dx, dw


def contract(a, b, a_axis, b_axis, dtype="float32"):
    """Sum over a's ``a_axis`` against b's ``b_axis`` (the other axes in order).

    The backward products: ``contract(g, w, -1, 1)`` is g @ w.T and
    ``contract(x, g, 0, 0)`` is x.T @ g. Operands are rounded to ``dtype`` as in
    ``matmul``. Spelled as one dot_general, not with ``.T``: XLA's CPU backend
    keeps ``g @ w.T`` a bf16 product only in this form (it upcasts the other to fp32).
    """
    a_axis, b_axis = a_axis % a.ndim, b_axis % b.ndim
    dims = (((a_axis,), (b_axis,)), ((), ()))
    if jnp.dtype(dtype) == jnp.float32:
        return jax.lax.dot_general(a, b, dims)
    return jax.lax.dot_general(a.astype(dtype), b.astype(dtype), dims,
                               preferred_element_type=jnp.float32)


_mixed_matmul.defvjp(_mixed_fwd, _mixed_bwd)


def rnn_update(p, h_BH, xw_BH, hw_BH):
    return jnp.tanh(xw_BH + hw_BH)


def lstm_update(p, carry, xw_B4H, hw_B4H):
    i, f, g, o = jnp.split(xw_B4H + hw_B4H, 4, axis=-1)
    c_BH = jax.nn.sigmoid(f) * carry[1] + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c_BH), c_BH


def gru_update(p, h_BH, xw_B3H, hw_B3H):
    xr, xz, xn = jnp.split(xw_B3H, 3, axis=-1)
    hr, hz, hn = jnp.split(hw_B3H, 3, axis=-1)
    r = jax.nn.sigmoid(xr + hr)
    z = jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * (hn + p["b_hn"][None, :]))
    return (1.0 - z) * n + z * h_BH


def _zeros(batch, hidden, dtype):
    return jnp.zeros((batch, hidden), dtype)


def _zeros_pair(batch, hidden, dtype):
    return (_zeros(batch, hidden, dtype), _zeros(batch, hidden, dtype))


CELLS = {
    "rnn": Cell(1, rnn_update, _zeros),
    "lstm": Cell(4, lstm_update, _zeros_pair),
    "gru": Cell(3, gru_update, _zeros),
}
