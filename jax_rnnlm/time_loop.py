"""The time loop of the classic cells (tanh RNN, LSTM, GRU), whose step multiplies
the previous state by w_h: a sequential ``lax.scan`` with a hand-written backward.

The input projection for all T steps is one matmul ``xs w_x + b`` hoisted out of
the scan; the scan body does only ``h w_h`` and the cell's nonlinearity
(``update``). A carry is ``h`` [B, H], or a tuple whose first entry is h (lstm's
(h, c)).
"""
import functools

import jax
import jax.numpy as jnp

from jax_rnnlm.precision import add_bias, contract, contract_rows, matmul


def hidden(carry):
    """The h [B, H] of a carry: the carry itself, or the first of lstm's (h, c)."""
    return carry[0] if isinstance(carry, tuple) else carry


def window(update, p, carry, xs_TBD, mask_TB=None, dtype="float32", unroll=1):
    """A window of T steps of the cell whose nonlinearity is ``update``: (hs_TBH, carry).
    A padded step (mask False) keeps the carry and outputs zeros."""
    xw_TBG = add_bias(matmul(xs_TBD, p["w_x"], dtype), p["b"])
    rest = {k: v for k, v in p.items() if k not in ("w_x", "w_h", "b")}  # gru's b_hn
    return time_scan(update, dtype, unroll, p["w_h"], rest, carry, xw_TBG, mask_TB)


def _step(update, rest, carry, xw_BG, hw_BG, m_B):
    """The cell's update, masked: (new carry, output h [B, H])."""
    new = update(rest, carry, xw_BG, hw_BG)
    if m_B is None:
        return new, hidden(new)
    new = keep_where(m_B, new, carry)
    return new, jnp.where(m_B[:, None], hidden(new), 0.0)


def keep_where(mask_B, new, old):
    """``new`` on rows where mask_B, else ``old``, for every [B, ...] leaf of a pytree."""
    def pick(n, o):
        return jnp.where(mask_B.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)
    return jax.tree.map(pick, new, old)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def time_scan(update, dtype, unroll, w_HG, rest, carry, xw_TBG, mask_TB):
    """The time loop of ``recurrent_layer``: (hs_TBH, final carry).

    Its backward pass is written out (``_time_scan_bwd``) for one reason: the
    gradient of ``w_h``. Autodiff of the scan adds a rank-B update
    ``h_{t-1}.T @ d(hw_t)`` into an [H, G·H] accumulator at every step; here the
    reverse scan only collects d(hw_t), and dW_h is one [H, T·B] @ [T·B, G·H]
    matmul after it. (Being a custom VJP, the layer supports reverse-mode
    differentiation only: ``jax.jvp``/``jacfwd`` of it raise a TypeError.)
    """
    return _time_scan_fwd(update, dtype, unroll, w_HG, rest, carry, xw_TBG, mask_TB)[0]


def _time_scan_fwd(update, dtype, unroll, w_HG, rest, carry, xw_TBG, mask_TB):
    def body(c, inputs):
        xw_BG, m_B = inputs
        hw_BG = matmul(hidden(c), w_HG, dtype)
        new, h_BH = _step(update, rest, c, xw_BG, hw_BG, m_B)
        return new, (h_BH, c, hw_BG)
    carry, (hs_TBH, prev_T, hw_TBG) = jax.lax.scan(body, carry, (xw_TBG, mask_TB),
                                                   unroll=unroll)
    return (hs_TBH, carry), (w_HG, rest, prev_T, hw_TBG, xw_TBG, mask_TB)


def _time_scan_bwd(update, dtype, unroll, res, cotangents):
    w_HG, rest, prev_T, hw_TBG, xw_TBG, mask_TB = res
    dhs_TBH, dcarry = cotangents

    def body(dc, inputs):
        c, xw_BG, hw_BG, m_B, dh_BH = inputs
        _, pullback = jax.vjp(lambda c, xw, hw, r: _step(update, r, c, xw, hw, m_B),
                              c, xw_BG, hw_BG, rest)
        dprev, dxw_BG, dhw_BG, drest = pullback((dc, dh_BH))
        dprev = _add_to_hidden(dprev, contract(dhw_BG, w_HG, -1, 1, dtype))
        return dprev, (dxw_BG, dhw_BG, drest)

    dcarry0, (dxw_TBG, dhw_TBG, drest_T) = jax.lax.scan(
        body, dcarry, (prev_T, xw_TBG, hw_TBG, mask_TB, dhs_TBH), reverse=True, unroll=unroll)
    h_prev_NH = hidden(prev_T).reshape(-1, w_HG.shape[0])
    dw_HG = contract_rows(h_prev_NH, dhw_TBG.reshape(-1, w_HG.shape[1]), dtype)
    drest = jax.tree.map(lambda d: jnp.sum(d, axis=0), drest_T)
    return dw_HG.astype(w_HG.dtype), drest, dcarry0, dxw_TBG, None


def _add_to_hidden(carry, dh_BH):
    return (carry[0] + dh_BH, carry[1]) if isinstance(carry, tuple) else carry + dh_BH


time_scan.defvjp(_time_scan_fwd, _time_scan_bwd)
