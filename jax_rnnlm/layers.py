"""The layers of the seed, as pure functions: embedding, recurrent layer over
time (a truncated-BPTT window, or a padded batch with a mask), affine, dropout
and softmax with cross-entropy.

Recurrent layers run time-major ([T, B, ·]) because ``lax.scan`` walks the
leading axis; callers transpose the int token ids once, not the floats.
"""
import functools

import jax
import jax.numpy as jnp

from jax_rnnlm.cells import CELLS, cell_name, hidden
from jax_rnnlm.precision import contract, contract_rows, matmul, round_to


def embedding(embed_VD, tokens):
    """Embedding lookup: int ids of any shape [...] -> [..., D]."""
    return jnp.take(embed_VD, tokens, axis=0)


def recurrent_layer(p, carry, xs_TBD, mask_TB=None, *, dtype="float32", unroll=1):
    """One recurrent layer over a window. Returns (hs_TBH, final carry).

    The input projection for all T steps is one matmul ``xs w_x + b`` hoisted
    out of the scan; the scan body does only ``h w_h`` and the nonlinearity.
    The final carry is returned so the next window can continue from it.
    With ``mask_TB`` (True at real steps of a padded batch) a padded step keeps
    the carry unchanged and outputs zeros, so the final carry is the state after
    each row's last real step. ``dtype`` is the matmul precision (``precision``).
    """
    xw_TBG = add_bias(matmul(xs_TBD, p["w_x"], dtype), p["b"])
    rest = {k: v for k, v in p.items() if k not in ("w_x", "w_h", "b")}  # gru's b_hn
    return time_scan(CELLS[cell_name(p)].update, dtype, unroll, p["w_h"], rest, carry,
                      xw_TBG, mask_TB)


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


def length_mask(lengths_B, T):
    """mask_BT bool: True at the first lengths_B[b] steps of row b."""
    return jnp.arange(T, dtype=lengths_B.dtype)[None, :] < lengths_B[:, None]


def dropout(key, x, rate, shared_axis=None):
    """Inverted dropout: zero each entry with probability ``rate``, scale the rest.
    The identity when ``key`` is None or ``rate`` is 0 (evaluation). With
    ``shared_axis`` one mask serves every position along that axis: axis 0 of a
    time-major [T, B, D] gives variational (locked) dropout, one mask per stream."""
    if rate == 0.0 or key is None:
        return x
    shape = tuple(1 if i == shared_axis else n for i, n in enumerate(x.shape))
    keep = jax.random.bernoulli(key, 1.0 - rate, shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


def drop_words(key, x_TBD, tokens_TB, vocab_size, rate):
    """Embedding dropout (Gal & Ghahramani 2016): each of the V word types is dropped
    with probability ``rate`` for the whole call, every occurrence's embedding
    zeroed, the kept ones scaled by 1 / (1 - rate). Same as masking rows of the
    [V, D] embedding before the lookup, without touching all V rows."""
    if rate == 0.0 or key is None:
        return x_TBD
    keep_TB1 = jnp.take(jax.random.bernoulli(key, 1.0 - rate, (vocab_size,)), tokens_TB)[..., None]
    return jnp.where(keep_TB1, x_TBD / (1.0 - rate), 0.0).astype(x_TBD.dtype)


def affine(h_NH, w_HV, b_V, dtype="float32"):
    """Affine output layer: [N, H] @ [H, V] + [V] -> logits [N, V] (any leading axes)."""
    return add_bias(matmul(h_NH, w_HV, dtype), b_V)


def add_bias(x, b):
    """x [..., O] + b [O], broadcast explicitly (the tests forbid implicit rank promotion)."""
    return x + b.reshape((1,) * (x.ndim - 1) + b.shape)


def softmax_cross_entropy(logits_NV, targets_N):
    """Per-token cross-entropy -log softmax(logits)[target], via log-sum-exp. [N]."""
    lse_N = jax.nn.logsumexp(logits_NV, axis=-1)
    target_N = jnp.take_along_axis(logits_NV, targets_N[:, None], axis=-1)[:, 0]
    return lse_N - target_N


def affine_cross_entropy(h_NH, w_HV, b_V, targets_N, dtype="float32"):
    """Affine + softmax cross-entropy fused for training. Returns ce [N].

    Same value as ``softmax_cross_entropy(affine(h, w, b), targets)``, but the
    target logit is ``h · w[:, target] + b[target]`` from gathered weight
    columns, so the backward pass scatters [N, H] rows into dW instead of an
    [N, V] one-hot into d(logits): at V = 10,000 that is the difference between
    a matmul-bound and a scatter-bound output layer. With a low-precision
    ``dtype`` the target logit rounds h and w the way the matmul does, so
    both terms see the same numbers.
    """
    with jax.named_scope("output_matmul"):
        logits_NV = matmul(h_NH, w_HV, dtype)
    with jax.named_scope("softmax_ce"):
        lse_N = jax.nn.logsumexp(add_bias(logits_NV, b_V), axis=-1)
        w_NH = round_to(jnp.take(w_HV, targets_N, axis=1).T, dtype)
        target_N = jnp.sum(round_to(h_NH, dtype) * w_NH, axis=-1) + jnp.take(b_V, targets_N)
        return lse_N - target_N
