"""Recurrent cells: one init and one update function per cell.

Every cell keeps its weights as ``{"w_x": [D, G·H], "w_h": [H, G·H], "b": [G·H]}``
with the G gates concatenated on the last axis in PyTorch order:

  rnn  (G=1)  h_t = tanh(x_t w_x + h_{t-1} w_h + b)
  lstm (G=4)  gates i, f, g, o;  c_t = f·c_{t-1} + i·g,  h_t = o·tanh(c_t)
  gru  (G=3)  gates r, z, n;     n = tanh(x w_xn + b_n + r·(h w_hn + b_hn)),
              h_t = (1 - z)·n + z·h_{t-1}

The GRU has one extra bias ``b_hn`` [H] because PyTorch and Flax put the
candidate's recurrent bias inside the reset gate; with it the weights map
one-to-one onto ``torch.nn.GRU`` and ``flax.linen.GRUCell`` (tests/test_cells.py
checks the Flax mapping).

A step takes the *already projected* input ``xw = x_t w_x + b`` (the layer
computes that for all T steps in one matmul), so the body of the time scan
does only ``hw = h_{t-1} w_h`` and the nonlinearity. The nonlinearity is the
cell's ``update(p, carry, xw, hw)``; ``Cell.step`` puts the two together.
Keeping them apart lets the layer's backward pass (``layers.recurrent_layer``)
form the gradient of ``w_h`` in one matmul after the time loop. The carry is
``h`` [B, H] for rnn and gru and the tuple ``(h, c)`` for lstm.
"""
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jax_rnnlm.precision import matmul


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


def uniform(key, shape, scale):
    """float32 weights uniform in [-scale, scale]: the init of every weight (Zaremba et al.)."""
    return jax.random.uniform(key, shape, jnp.float32, -scale, scale)


def init_cell(key, name, in_dim, hidden_dim, scale):
    """Weights of one cell, uniform in [-scale, scale].

    Returns {"w_x": [D, G·H], "w_h": [H, G·H], "b": [G·H]} (+ "b_hn": [H] for gru).
    """
    g = CELLS[name].gates
    k_x, k_h, k_b, k_n = jax.random.split(key, 4)
    p = {"w_x": uniform(k_x, (in_dim, g * hidden_dim), scale),
         "w_h": uniform(k_h, (hidden_dim, g * hidden_dim), scale),
         "b": uniform(k_b, (g * hidden_dim,), scale)}
    if name == "gru":
        p["b_hn"] = uniform(k_n, (hidden_dim,), scale)
    return p


def cell_name(p):
    """The cell a layer's params belong to, read off the shape of w_h [H, G·H]."""
    hidden_dim, width = p["w_h"].shape
    for name, cell in CELLS.items():
        if cell.gates * hidden_dim == width:
            return name
    raise ValueError(f"w_h has shape {p['w_h'].shape}: width is not 1, 3 or 4 times H")


def zero_carry(p, batch, dtype=jnp.float32):
    """Zero state for the cell whose params are ``p`` (H read off w_h [H, G·H])."""
    return CELLS[cell_name(p)].zero_carry(batch, p["w_h"].shape[0], dtype)


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


def _zeros(batch, hidden_dim, dtype):
    return jnp.zeros((batch, hidden_dim), dtype)


def _zeros_pair(batch, hidden_dim, dtype):
    return (_zeros(batch, hidden_dim, dtype), _zeros(batch, hidden_dim, dtype))


CELLS = {
    "rnn": Cell(1, rnn_update, _zeros),
    "lstm": Cell(4, lstm_update, _zeros_pair),
    "gru": Cell(3, gru_update, _zeros),
}
