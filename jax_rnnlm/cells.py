"""Recurrent cells, chosen by name: each is a small record of its params (init and
names), its one-step update and its window function (``CELLS``).

The classic cells keep their weights as ``{"w_x": [D, G·H], "w_h": [H, G·H], "b": [G·H]}``
with the G gates concatenated on the last axis in PyTorch order:

  rnn  (G=1)  h_t = tanh(x_t w_x + h_{t-1} w_h + b)
  lstm (G=4)  gates i, f, g, o;  c_t = f·c_{t-1} + i·g,  h_t = o·tanh(c_t)
  gru  (G=3)  gates r, z, n;     n = tanh(x w_xn + b_n + r·(h w_hn + b_hn)),
              h_t = (1 - z)·n + z·h_{t-1}

The GRU has one extra bias ``b_hn`` [H] because PyTorch and Flax put the
candidate's recurrent bias inside the reset gate; with it the weights map
one-to-one onto ``torch.nn.GRU`` and ``flax.linen.GRUCell`` (tests/test_cells.py
checks the Flax mapping). ``rnn_update``, ``lstm_update`` and ``gru_update`` below are
their definitions, on the projected input ``xw = x_t w_x + b`` and ``hw = h_{t-1} w_h``;
the time loop (``time_loop``: sequential, hand-written backward) and the one-step
function run the same math in the fused form of ``fused_cells``, tested equal to these
in float64. The carry is ``h`` [B, H] for rnn and gru and the tuple ``(h, c)`` for lstm.

The cells linear in their state (mingru, minlstm, rglru: ``linear_cells``) have no
w_h: their window runs in parallel over time (an associative scan), and their carry
is ``h`` [B, H].
"""
import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jax_rnnlm import linear_cells, time_loop
from jax_rnnlm.time_loop import hidden  # noqa: F401 (hidden: part of this API)


class Cell(NamedTuple):
    gates: int               # G: how many H-wide blocks the input projection makes
    params: tuple            # the names of its params, to tell its params from another's
    init: Callable           # (key, in_dim D, hidden H, scale) -> params
    zero_carry: Callable     # (batch, hidden, dtype) -> carry
    step: Callable           # (p, carry, x_BD, dtype) -> (carry, h_BH): one time step
    window: Callable         # (p, carry, xs_TBD, mask_TB, dtype, time_loop) -> (hs_TBH, carry)
    parallel: bool           # whether the window runs in parallel over time


def uniform(key, shape, scale):
    """float32 weights uniform in [-scale, scale]: the init of every weight (Zaremba et al.)."""
    return jax.random.uniform(key, shape, jnp.float32, -scale, scale)


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


def _classic_init(gates, extra=()):
    def init(key, in_dim, hidden_dim, scale):
        """{"w_x": [D, G·H], "w_h": [H, G·H], "b": [G·H]} (+ "b_hn": [H] for gru)."""
        k_x, k_h, k_b, k_n = jax.random.split(key, 4)
        p = {"w_x": uniform(k_x, (in_dim, gates * hidden_dim), scale),
             "w_h": uniform(k_h, (hidden_dim, gates * hidden_dim), scale),
             "b": uniform(k_b, (gates * hidden_dim,), scale)}
        p.update({name: uniform(k_n, (hidden_dim,), scale) for name in extra})
        return p
    return init


def _classic_window(name, p, carry, xs_TBD, mask_TB, dtype, time_loop_=None):
    return time_loop.window(name, p, carry, xs_TBD, mask_TB, dtype)


def _zeros(batch, hidden_dim, dtype):
    return jnp.zeros((batch, hidden_dim), dtype)


def _zeros_pair(batch, hidden_dim, dtype):
    return (_zeros(batch, hidden_dim, dtype), _zeros(batch, hidden_dim, dtype))


def _classic(name, gates, zero, extra=()):
    return Cell(gates, ("w_x", "w_h", "b") + extra, _classic_init(gates, extra), zero,
                functools.partial(time_loop.step, name),
                functools.partial(_classic_window, name), parallel=False)


def _linear(gates, coefficients, init, names):
    return Cell(gates, names, init, _zeros, functools.partial(linear_cells.step, coefficients),
                functools.partial(linear_cells.window, coefficients), parallel=True)


CELLS = {
    "rnn": _classic("rnn", 1, _zeros),
    "lstm": _classic("lstm", 4, _zeros_pair),
    "gru": _classic("gru", 3, _zeros, extra=("b_hn",)),
    "mingru": _linear(2, linear_cells.mingru_coefficients, linear_cells.init_min(2),
                      ("w_x", "b")),
    "minlstm": _linear(3, linear_cells.minlstm_coefficients, linear_cells.init_min(3),
                       ("w_x", "b")),
    "rglru": _linear(2, linear_cells.rglru_coefficients, linear_cells.init_rglru,
                     ("w_in", "b_in", "w_g", "b_g", "a_param")),
}


def init_cell(key, name, in_dim, hidden_dim, scale):
    """Weights of one layer of the named cell (D = in_dim, H = hidden_dim)."""
    return CELLS[name].init(key, in_dim, hidden_dim, scale)


def zero_carry(name, batch, hidden_dim, dtype=jnp.float32):
    """Zero state of the named cell for ``batch`` rows of width H."""
    return CELLS[name].zero_carry(batch, hidden_dim, dtype)


def hidden_width(name, p):
    """H of one layer's params of the named cell, read off its input projection."""
    if "w_in" in CELLS[name].params:
        return p["w_in"].shape[-1]
    return p["w_x"].shape[-1] // CELLS[name].gates


def check_params(name, p, hidden_dim):
    """ValueError unless ``p`` are params of the named cell at width H: their names and
    the width of the input projection (G·H) tell every cell from every other."""
    if name not in CELLS:
        raise ValueError(f"unknown cell {name!r}: choose one of {sorted(CELLS)}")
    cell = CELLS[name]
    projection = p["w_in" if "w_in" in cell.params else "w_x"] if set(p) == set(cell.params) \
        else None
    width = hidden_dim if "w_in" in cell.params else cell.gates * hidden_dim
    if projection is None or projection.shape[-1] != width:
        shapes = {k: tuple(v.shape) for k, v in sorted(p.items())}
        raise ValueError(f"these params are not those of a {name!r} cell of width "
                         f"{hidden_dim} (they hold {shapes}; {name} has {cell.params}); "
                         f"were they trained with another --cell?")
