"""The adaptive softmax (Grave et al. 2017, "Efficient softmax approximation for
GPUs"): an exactly normalised output layer whose cost follows the word frequencies.

The vocabulary, sorted by frequency, is cut at ``cutoffs`` c_0 < c_1 < ... < c_{K-1}:
the head scores the c_0 most frequent words and one entry per tail cluster; tail i
holds words [c_{i-1}, c_i) (the last one up to V) and scores them from h projected
to H / div^i dimensions. log p(w) = log p_head(w) for a head word, else
log p_head(cluster of w) + log p_tail(w | cluster).

Params ``{"head": {"w": [H, c_0 + K], "b": [c_0 + K]},
"tails": [{"proj": [H, H_i], "w": [H_i, size_i], "b": [size_i]}, ...]}``.

In training only the rows whose target lies in a tail pay for that tail: rows are
ordered tail-first and the tail is scored in chunks of ``CHUNK`` rows under
``lax.cond``, so chunks past the tail's rows are skipped at run time (static
shapes, reverse-mode differentiable).
"""
import jax
import jax.numpy as jnp

from jax_rnnlm.cells import uniform
from jax_rnnlm.precision import matmul

CHUNK = 32


def head_size(cutoffs, vocab_size):
    """c_0: the words the head scores (all V without cutoffs: the full softmax)."""
    return cutoffs[0] if cutoffs else vocab_size


def bounds(cutoffs, vocab_size):
    """[(lo, hi)] of the K tail clusters (none without cutoffs)."""
    if not cutoffs:
        return []
    edges = list(cutoffs) + [vocab_size]
    return list(zip(edges[:-1], edges[1:]))


def tail_dims(hidden, cutoffs, div_value):
    """H_i of each tail projection: H / div^i, at least 1."""
    return [max(1, int(hidden // div_value ** (i + 1))) for i in range(len(cutoffs))]


def init(key, hidden, vocab_size, cutoffs, div_value, scale):
    """Fresh adaptive-softmax params (layout in the module docstring)."""
    keys = jax.random.split(key, 1 + 2 * len(cutoffs))
    width = head_size(cutoffs, vocab_size) + len(cutoffs)
    head = {"w": uniform(keys[0], (hidden, width), scale), "b": jnp.zeros((width,), jnp.float32)}
    tails = [{"proj": uniform(keys[1 + 2 * i], (hidden, d), scale),
              "w": uniform(keys[2 + 2 * i], (d, hi - lo), scale),
              "b": jnp.zeros((hi - lo,), jnp.float32)}
             for i, ((lo, hi), d) in enumerate(zip(bounds(cutoffs, vocab_size),
                                                   tail_dims(hidden, cutoffs, div_value)))]
    return {"head": head, "tails": tails}


def _logits(p, h_NH, dtype):
    return matmul(h_NH, p["w"], dtype) + p["b"][None, :]


def _tail_logits(tail, h_NH, dtype):
    return matmul(matmul(h_NH, tail["proj"], dtype), tail["w"], dtype) + tail["b"][None, :]


def log_probs(p, h_NH, cutoffs, vocab_size, dtype="float32"):
    """log p(w | h) for every word: [N, V], each row's exp summing to 1."""
    head = jax.nn.log_softmax(_logits(p["head"], h_NH, dtype), axis=-1)
    c0 = head_size(cutoffs, vocab_size)
    parts = [head[:, :c0]]
    for i, tail in enumerate(p["tails"]):
        parts.append(head[:, c0 + i:c0 + i + 1]
                     + jax.nn.log_softmax(_tail_logits(tail, h_NH, dtype), axis=-1))
    return jnp.concatenate(parts, axis=-1)


def cross_entropy(p, h_NH, targets_N, cutoffs, vocab_size, dtype="float32"):
    """-log p(target | h) per row: [N]."""
    c0 = head_size(cutoffs, vocab_size)
    edges_1K = jnp.asarray(cutoffs, targets_N.dtype).reshape(1, -1)
    cluster_N = jnp.sum(targets_N[:, None] >= edges_1K, axis=-1, dtype=targets_N.dtype)
    head_logits = _logits(p["head"], h_NH, dtype)
    head_index = jnp.where(cluster_N == 0, targets_N, c0 + cluster_N - 1)
    ce_N = (jax.nn.logsumexp(head_logits, axis=-1)
            - jnp.take_along_axis(head_logits, head_index[:, None], axis=-1)[:, 0])
    for i, (tail, (lo, hi)) in enumerate(zip(p["tails"], bounds(cutoffs, vocab_size))):
        local_N = jnp.clip(targets_N - lo, 0, hi - lo - 1)
        ce_N = ce_N + _tail_cross_entropy(tail, h_NH, local_N, cluster_N == i + 1, dtype)
    return ce_N


def _tail_cross_entropy(tail, h_NH, local_N, in_tail_N, dtype):
    """-log p_tail(local target) on the rows in the tail, 0 elsewhere: [N]."""
    N = h_NH.shape[0]
    n_chunks = -(-N // CHUNK)
    order_N = jnp.argsort(~in_tail_N, stable=True)  # the tail's rows first
    count = jnp.sum(in_tail_N, dtype=jnp.int32)
    pad = n_chunks * CHUNK - N
    h_sorted = jnp.pad(h_NH[order_N], ((0, pad), (0, 0)))
    t_sorted = jnp.pad(local_N[order_N], (0, pad))

    @jax.checkpoint  # keep rows, not [CHUNK, size] logits, for the backward: skipped
    def score(rows_CH, t_C):  # chunks would still store zero residuals of that size
        z_CS = _tail_logits(tail, rows_CH, dtype)
        return (jax.nn.logsumexp(z_CS, axis=-1)
                - jnp.take_along_axis(z_CS, t_C[:, None], axis=-1)[:, 0])

    def chunk(c):
        rows = jax.lax.dynamic_slice_in_dim(h_sorted, c * CHUNK, CHUNK)
        t = jax.lax.dynamic_slice_in_dim(t_sorted, c * CHUNK, CHUNK)
        return jax.lax.cond(c * CHUNK < count, score,
                            lambda r, _: jnp.zeros((CHUNK,), r.dtype), rows, t)

    ce_sorted = jax.lax.map(chunk, jnp.arange(n_chunks, dtype=jnp.int32)).reshape(-1)[:N]
    ce_N = jnp.zeros((N,), ce_sorted.dtype).at[order_N].set(ce_sorted)
    return jnp.where(in_tail_N, ce_N, 0.0)
