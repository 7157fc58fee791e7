"""The layers of the seed, as pure functions: embedding, recurrent layer over
time (a truncated-BPTT window, or a padded batch with a mask), affine, dropout
and softmax with cross-entropy.

Recurrent layers run time-major ([T, B, ·]) because ``lax.scan`` walks the
leading axis; callers transpose the int token ids once, not the floats.
"""
import jax
import jax.numpy as jnp

from jax_rnnlm.cells import CELLS, check_params, hidden
from jax_rnnlm.precision import add_bias, matmul, round_to


def embedding(embed_VD, tokens):
    """Embedding lookup: int ids of any shape [...] -> [..., D]."""
    return jnp.take(embed_VD, tokens, axis=0)


def recurrent_layer(cell, p, carry, xs_TBD, mask_TB=None, *, dtype="float32",
                    time_loop="parallel"):
    """One recurrent layer of the named ``cell`` over a window: (hs_TBH, final carry).

    The final carry is returned so the next window can continue from it. With
    ``mask_TB`` (True at real steps of a padded batch) a padded step keeps the carry
    unchanged and outputs zeros, so the final carry is the state after each row's
    last real step. ``dtype`` is the matmul precision (``precision``); ``time_loop``
    picks the associative or the sequential scan of the cells linear in their state.
    A params pytree of another cell is a ValueError (``cells.check_params``)."""
    check_params(cell, p, hidden(carry).shape[-1])
    return CELLS[cell].window(p, carry, xs_TBD, mask_TB, dtype, time_loop)


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
