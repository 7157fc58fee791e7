"""The layers of the seed, as pure functions: embedding, recurrent layer over
time (truncated-BPTT window), affine, dropout and softmax with cross-entropy.

Shapes: B batch, T time, D embedding, H hidden, V vocabulary, N = B·T.
Recurrent layers run time-major ([T, B, ·]) because ``lax.scan`` walks the
leading axis; the model transposes the int token ids once, not the floats.
"""
import jax
import jax.numpy as jnp

from jax_rnnlm.cells import CELLS, cell_name, matmul  # noqa: F401  (matmul is part of this API)


def embedding(embed_VD, tokens):
    """Embedding lookup: int ids of any shape [...] -> [..., D]."""
    return jnp.take(embed_VD, tokens, axis=0)


def recurrent_layer(p, carry, xs_TBD, *, unroll=1, dtype="float32"):
    """One recurrent layer over a window. Returns (hs_TBH, final carry).

    The input projection for all T steps is one matmul ``xs w_x + b`` hoisted
    out of the scan; the scan body does only ``h w_h`` and the nonlinearity.
    The final carry is returned so the next window can continue from it.
    ``dtype`` is the matmul operand precision (see ``cells.matmul``).
    """
    step = CELLS[cell_name(p)].step
    xw_TBG = add_bias(matmul(xs_TBD, p["w_x"], dtype), p["b"])
    carry, hs_TBH = jax.lax.scan(lambda c, xw: step(p, c, xw, dtype), carry, xw_TBG,
                                 unroll=unroll)
    return hs_TBH, carry


def dropout(key, x, rate):
    """Inverted dropout: zero each entry with probability ``rate``, scale the rest."""
    if rate == 0.0 or key is None:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


def affine(h_NH, w_HV, b_V, dtype="float32"):
    """Affine output layer: [N, H] @ [H, V] + [V] -> logits [N, V]."""
    return add_bias(matmul(h_NH, w_HV, dtype), b_V)


def add_bias(x, b):
    """x [..., K] + b [K], broadcast explicitly (the tests forbid implicit rank promotion)."""
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
        w_NH = jnp.take(w_HV, targets_N, axis=1).T
        if jnp.dtype(dtype) != jnp.float32:
            h_NH, w_NH = (a.astype(dtype).astype(a.dtype) for a in (h_NH, w_NH))
        target_N = jnp.sum(h_NH * w_NH, axis=-1) + jnp.take(b_V, targets_N)
        return lse_N - target_N
