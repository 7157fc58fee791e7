"""The classic cells' time step in the form the time loop runs: the gates as one
[B, G, H] array (a reshape of [B, G·H], no per-gate slices, which XLA:CPU compiled to a
kernel per gate), one pass of activations, and a backward that is arithmetic on what
the forward saved, so each direction of a step compiles to a few elementwise kernels
beside the recurrent product (``bench/ops.py`` counts them).

Each cell's plain definition (``cells.rnn_update`` etc.) stays the reference; these
forms are tested equal to it and to its autodiff gradient in float64
(tests/test_fused_cells.py). A carry is as in ``cells`` (h, or lstm's (h, c)).
``forward(xw, hw, prev)`` returns the new carry and what its backward needs beyond
the carries; ``backward(saved, prev, new, dnew)`` maps the cotangent of the new carry
to that of the previous carry (through the elementwise update only: the path through
h w_h is the loop's product) and of the projected input xw and recurrent product hw,
each [B, G, H]. For rnn and lstm dxw = dhw (``backward`` returns None for dhw).

  rnn   saves nothing               h = tanh(xw + hw)
  lstm  saves a = (i f g o)         a = act(xw + hw);  c = f c' + i g;  h = o tanh c
  gru   saves r u, n, hw_n          r, u = σ(xw + hw)[:2];  n = tanh(xw_n + r hw_n);
                                    h = (1 - u) n + u h'   (hw_n holds b_hn)
"""
from typing import Callable, NamedTuple, Optional

import jax.numpy as jnp
import numpy as np


class Fused(NamedTuple):
    forward: Callable    # (xw_BGH, hw_BGH, prev) -> (new, saved)
    backward: Callable   # (saved, prev, new, dnew) -> (dprev, dxw_BGH, dhw_BGH | None)


def activate(z_BGH, tanh_gates):
    """tanh on the gates flagged in ``tanh_gates``, σ on the others, in one pass:
    σ(z) = (1 + tanh(z / 2)) / 2, so every gate is s·tanh(s·z) + o."""
    flag = np.asarray(tanh_gates)[None, :, None]
    s = jnp.asarray(np.where(flag, 1.0, 0.5), z_BGH.dtype)
    return s * jnp.tanh(s * z_BGH) + jnp.asarray(np.where(flag, 0.0, 0.5), z_BGH.dtype)


def slope(a_BGH, tanh_gates):
    """d act / dz from the activation's output: 1 - a² (tanh), a (1 - a) (σ)."""
    flag = np.asarray(tanh_gates)[None, :, None]
    return jnp.where(flag, 1.0 - a_BGH * a_BGH, a_BGH * (1.0 - a_BGH))


# ---------------------------------------------------------------- rnn

def rnn_forward(xw_BGH, hw_BGH, h):
    return jnp.tanh(xw_BGH[:, 0] + hw_BGH[:, 0]), ()


def rnn_backward(saved, h_prev, h, dh):
    return jnp.zeros_like(dh), (dh * (1.0 - h * h))[:, None], None


# ---------------------------------------------------------------- lstm

LSTM_TANH = (False, False, True, False)   # i, f, g, o


def lstm_forward(xw_BGH, hw_BGH, prev):
    a = activate(xw_BGH + hw_BGH, LSTM_TANH)
    c = a[:, 1] * prev[1] + a[:, 0] * a[:, 2]
    return (a[:, 3] * jnp.tanh(c), c), a


def lstm_backward(a, prev, new, dnew):
    dh, dc = dnew
    tc = jnp.tanh(new[1])      # recomputed: cheaper than a saved array per step
    dc = dc + dh * a[:, 3] * (1.0 - tc * tc)
    da = jnp.stack([dc * a[:, 2], dc * prev[1], dc * a[:, 0], dh * tc], axis=1)
    return (jnp.zeros_like(dc), dc * a[:, 1]), da * slope(a, LSTM_TANH), None


# ---------------------------------------------------------------- gru

def gru_forward(xw_BGH, hw_BGH, h_prev):
    ru = activate(xw_BGH[:, :2] + hw_BGH[:, :2], (False, False))
    n = jnp.tanh(xw_BGH[:, 2] + ru[:, 0] * hw_BGH[:, 2])
    return (1.0 - ru[:, 1]) * n + ru[:, 1] * h_prev, (ru, n, hw_BGH[:, 2])


def gru_backward(saved, h_prev, h, dh):
    ru, n, hn = saved
    r, u = ru[:, 0], ru[:, 1]
    dn = dh * (1.0 - u) * (1.0 - n * n)
    dru = jnp.stack([dn * hn, dh * (h_prev - n)], axis=1) * slope(ru, (False, False))
    return (dh * u, jnp.concatenate([dru, dn[:, None]], axis=1),
            jnp.concatenate([dru, (dn * r)[:, None]], axis=1))


FUSED = {"rnn": Fused(rnn_forward, rnn_backward),
         "lstm": Fused(lstm_forward, lstm_backward),
         "gru": Fused(gru_forward, gru_backward)}


def recurrent_bias(name, p) -> Optional[jnp.ndarray]:
    """The bias that goes with h w_h, [1, G, H], or None: gru's b_hn on its n gate
    (PyTorch's and Flax's layout, see ``cells``)."""
    if name != "gru":
        return None
    b = p["b_hn"]
    return jnp.stack([jnp.zeros_like(b), jnp.zeros_like(b), b])[None]


def to_parts(x_BG, gates):
    """[..., B, G·H] -> [..., B, G, H]: the gates as one array (a reshape, no copy)."""
    return x_BG.reshape(*x_BG.shape[:-1], gates, x_BG.shape[-1] // gates)


def from_parts(x_BGH):
    """[..., B, G, H] -> [..., B, G·H]."""
    return x_BGH.reshape(*x_BGH.shape[:-2], -1)
