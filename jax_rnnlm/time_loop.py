"""The time loop of the classic cells (tanh RNN, LSTM, GRU), whose step multiplies the
previous state by w_h: a sequential ``lax.scan`` with a hand-written backward.

The input projection for all T steps is one matmul ``xs w_x + b`` hoisted out of the
scan; a step is the product h w_h and the cell's fused elementwise update
(``fused_cells``: the gates as one [B, G, H] array, one pass of activations), and a
reverse step the cell's arithmetic-only backward and the product dhw w_hᵀ. XLA:CPU pays
a fixed cost per op, and a step's math is small: per-gate slices of [B, G·H] compiled to
one kernel per gate. A carry is ``h`` [B, H], or lstm's tuple ``(h, c)``.
"""
import functools

import jax
import jax.numpy as jnp

from jax_rnnlm.fused_cells import FUSED, from_parts, recurrent_bias, to_parts
from jax_rnnlm.precision import add_bias, contract_rows, matmul


def hidden(carry):
    """The h [B, H] of a carry: the carry itself, or the first of lstm's (h, c)."""
    return carry[0] if isinstance(carry, tuple) else carry


def keep_where(mask_B, new, old):
    """``new`` on rows where mask_B, else ``old``, for every [B, ...] leaf of a pytree."""
    def pick(n, o):
        return jnp.where(mask_B.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)
    return jax.tree.map(pick, new, old)


def window(name, p, carry, xs_TBD, mask_TB=None, dtype="float32"):
    """A window of T steps of the named classic cell: (hs_TBH, carry). A padded step
    (mask False) keeps the carry and outputs zeros."""
    xw_TBG = add_bias(matmul(xs_TBD, p["w_x"], dtype), p["b"])
    return time_scan(name, jnp.dtype(dtype).name, p["w_h"], recurrent_bias(name, p), carry,
                     xw_TBG, mask_TB)


def step(name, p, carry, x_BD, dtype="float32"):
    """One time step from the raw input x [B, D]: (carry, h [B, H]); the same fused
    step as the loop (generation, batch-1 scoring)."""
    xw_BG = add_bias(matmul(x_BD, p["w_x"], dtype), p["b"])
    new, _ = _forward(name, dtype, p["w_h"], recurrent_bias(name, p), carry, xw_BG)
    return new, hidden(new)


def _forward(name, dtype, w_HG, b_h, prev, xw_BG, m_B=None):
    """One step: (new carry, saved), masked rows keeping ``prev``."""
    G = w_HG.shape[1] // w_HG.shape[0]
    hw_BGH = to_parts(matmul(hidden(prev), w_HG, dtype), G)
    if b_h is not None:
        hw_BGH = hw_BGH + b_h
    new, saved = FUSED[name].forward(to_parts(xw_BG, G), hw_BGH, prev)
    if m_B is not None:
        new = keep_where(m_B, new, prev)
    return new, saved


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def time_scan(name, dtype, w_HG, b_h, carry, xw_TBG, mask_TB):
    """The time loop of ``window``: (hs_TBH, final carry).

    The backward is written out (``_time_scan_bwd``): a reverse step is the cell's
    arithmetic-only backward and the product dhw w_hᵀ, and dW_h is one
    [H, T, B] · [T, B, G·H] product after the loop rather than a rank-B update of an
    [H, G·H] accumulator at every step. (Being a custom VJP, the layer supports
    reverse-mode differentiation only.)"""
    def body(c, inputs):
        xw_BG, m_B = inputs
        new, _ = _forward(name, dtype, w_HG, b_h, c, xw_BG, m_B)
        return new, _output(new, m_B)
    last, hs_TBH = jax.lax.scan(body, carry, (xw_TBG, mask_TB))
    return hs_TBH, last


def _output(new, m_B):
    h = hidden(new)
    return h if m_B is None else jnp.where(m_B[:, None], h, 0.0)


def _time_scan_fwd(name, dtype, w_HG, b_h, carry, xw_TBG, mask_TB):
    def body(c, inputs):
        xw_BG, m_B = inputs
        new, saved = _forward(name, dtype, w_HG, b_h, c, xw_BG, m_B)
        return new, (new, saved)
    last, (news, saved) = jax.lax.scan(body, carry, (xw_TBG, mask_TB))
    hs_TBH = hidden(news)
    if mask_TB is not None:
        hs_TBH = jnp.where(mask_TB[:, :, None], hs_TBH, 0.0)
    prevs = jax.tree.map(lambda c0, cs: jnp.concatenate([c0[None], cs[:-1]]), carry, news)
    return (hs_TBH, last), (w_HG, b_h, prevs, news, saved, mask_TB)


def _time_scan_bwd(name, dtype, res, cotangents):
    w_HG, b_h, prevs, news, saved, mask_TB = res
    dhs_TBH, dlast = cotangents
    G = w_HG.shape[1] // w_HG.shape[0]
    backward = FUSED[name].backward
    w_GH = jnp.transpose(w_HG)   # once per window, so the loop's product is a plain one

    def body(dnew, inputs):
        prev, new, sv, dh_out, m_B = inputs
        if m_B is not None:
            dh_out = jnp.where(m_B[:, None], dh_out, 0.0)
        dnew = _add_to_hidden(dnew, dh_out)
        if m_B is None:
            dprev, dxw, dhw = backward(sv, prev, new, dnew)
        else:
            dprev, dxw, dhw = backward(sv, prev, new, keep_where(m_B, dnew, _zeros(dnew)))
            dprev = keep_where(m_B, dprev, dnew)
        dxw_BG = from_parts(dxw)
        dhw_BG = dxw_BG if dhw is None else from_parts(dhw)
        dh = matmul(dhw_BG, w_GH, dtype).astype(hidden(dprev).dtype)
        return _add_to_hidden(dprev, dh), (dxw_BG, None if dhw is None else dhw_BG)

    dcarry0, (dxw_TBG, dhw_TBG) = jax.lax.scan(
        body, dlast, (prevs, news, saved, dhs_TBH, mask_TB), reverse=True)
    dhw_TBG = dxw_TBG if dhw_TBG is None else dhw_TBG
    dw_HG = contract_rows(hidden(prevs), dhw_TBG, dtype)
    db_h = None if b_h is None else jnp.sum(to_parts(dhw_TBG, G), axis=(0, 1))[None]
    return dw_HG.astype(w_HG.dtype), db_h, dcarry0, dxw_TBG, None


def _add_to_hidden(carry, dh_BH):
    return (carry[0] + dh_BH, carry[1]) if isinstance(carry, tuple) else carry + dh_BH


def _zeros(tree):
    return jax.tree.map(jnp.zeros_like, tree)


time_scan.defvjp(_time_scan_fwd, _time_scan_bwd)
