"""Evaluation-time adaptation: dynamic evaluation and the neural cache.

Both score a split the way ``step.evaluate`` does (B streams, the carry flowing
through them, every target scored once, before the model has seen it) and both
leave the params they are given untouched.

* Dynamic evaluation (Krause et al. 2018, "Dynamic Evaluation of Neural Sequence
  Models"): after scoring each window, take one gradient step on it, so later
  windows are scored by weights adapted to the text so far. Rules: "sgd",
  ``θ ← θ - lr·g``; "rms", ``θ ← θ - lr·g / (√MS + ε·mean √MS) + λ_i (θ_0 - θ)``
  with MS the mean squared gradient measured on training windows and a decay back
  to the trained weights θ_0 that is stronger where MS is larger
  (``λ_i = min(decay · √MS_i / mean √MS, 1)``). ε keeps weights whose gradient was
  (nearly) never seen in training, such as rare words' embeddings, from taking
  huge steps: with ε = 1e-8 the small PTB model diverged at every lr tried.
* Neural cache (Grave et al. 2017, "Improving Neural Language Models with a
  Continuous Cache"): the last N hidden states h_i of a stream and the words
  y_i that followed them give ``p_cache(w) ∝ Σ_{i: y_i = w} exp(θ ⟨h_t, h_i⟩)``,
  mixed as ``p = (1 - λ) p_model + λ p_cache``; while the cache is still empty
  (a stream's first position) p = p_model.
"""
import dataclasses
import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jax_rnnlm import data, model, step
from jax_rnnlm.config import DYNAMIC_RULES as RULES, ModelConfig


@dataclasses.dataclass(frozen=True)
class DynamicConfig:
    rule: str = "sgd"     # "sgd" or "rms"
    lr: float = 1e-3      # step size on the gradient of a window's mean token loss
    decay: float = 0.0    # "rms": pull back toward the trained weights, per window
    eps: float = 1.0      # "rms": added to √MS, in units of its mean over all weights

    def __post_init__(self):
        if self.rule not in RULES:
            raise ValueError(f"dynamic evaluation rule must be one of {RULES}, got {self.rule!r}")
        if not (self.lr >= 0.0 and self.decay >= 0.0):
            raise ValueError(f"dynamic lr and decay must be >= 0, got {self.lr}, {self.decay}")


@dataclasses.dataclass(frozen=True)
class CacheConfig:
    size: int = 500       # N: cached positions per stream
    theta: float = 0.3    # θ: flatness of the cache distribution
    lam: float = 0.1      # λ: weight of the cache in the mixture

    def __post_init__(self):
        if self.size < 1 or not 0.0 <= self.lam <= 1.0 or self.theta < 0.0:
            raise ValueError(f"cache needs size >= 1, theta >= 0 and lambda in [0, 1], got "
                             f"{self.size}, {self.theta}, {self.lam}")


# --- dynamic evaluation -----------------------------------------------------------

def _mean_loss_grad(params, cfg, carry, inputs_BT, targets_BT):
    """(summed token loss, carry, gradient of the mean token loss) of one window."""
    def summed(p, c):
        ce_BT, c = model.token_losses(p, cfg, c, inputs_BT, targets_BT)
        return jnp.sum(ce_BT), c
    (total, carry), g = jax.value_and_grad(summed, has_aux=True)(params, carry)
    return total, carry, jax.tree.map(lambda x: x / inputs_BT.size, g)


def dynamic_update(params, grads, params0, dyn: DynamicConfig, ms=None):
    """One step of the rule of ``dyn`` (module docstring); ``ms``: MS per param, for "rms"."""
    if dyn.rule == "sgd":
        return jax.tree.map(lambda p, g: p - dyn.lr * g, params, grads)
    rms = jax.tree.map(jnp.sqrt, ms)
    mean_rms = (sum(jnp.sum(r) for r in jax.tree.leaves(rms))
                / sum(r.size for r in jax.tree.leaves(rms)))

    def rule(p, g, p0, r):
        decay = jnp.minimum(dyn.decay * r / mean_rms, 1.0)
        return p - dyn.lr * g / (r + dyn.eps * mean_rms) + decay * (p0 - p)
    return jax.tree.map(rule, params, grads, params0, rms)


@functools.partial(jax.jit, static_argnames=("cfg", "bptt", "dyn"))
def dynamic_windows(params, params0, ms, cfg: ModelConfig, carry, streams_BL, starts_W, bptt,
                    dyn: DynamicConfig):
    """Score each of W windows, then adapt on it: (params, carry, summed loss [W])."""
    def body(pc, start):
        p, c = pc
        total, c, g = _mean_loss_grad(p, cfg, c, *step.window(streams_BL, start, bptt))
        return (dynamic_update(p, g, params0, dyn, ms), c), total
    (params, carry), totals = jax.lax.scan(body, (params, carry), starts_W)
    return params, carry, totals


@functools.partial(jax.jit, static_argnames=("cfg", "bptt"))
def _summed_square_grads(params, cfg: ModelConfig, carry, streams_BL, starts_W, bptt):
    def body(acc_c, start):
        acc, c = acc_c
        _, c, g = _mean_loss_grad(params, cfg, c, *step.window(streams_BL, start, bptt))
        return (jax.tree.map(lambda a, x: a + x * x, acc, g), c), None
    zero = jax.tree.map(jnp.zeros_like, params)
    return jax.lax.scan(body, (zero, carry), starts_W)[0][0]


def mean_square_grads(params, cfg: ModelConfig, ids_M, *, batch_size, bptt, max_windows):
    """MS of the "rms" rule: the mean over the first ``max_windows`` windows of the
    train split (same B and T as the evaluation) of the squared gradient."""
    streams = jnp.asarray(data.batchify(ids_M, batch_size, source="train split"))
    n = min((streams.shape[1] - 1) // bptt, max_windows)
    starts = jnp.arange(n, dtype=jnp.int32) * bptt
    summed = _summed_square_grads(params, cfg, model.init_carry(cfg, batch_size), streams,
                                  starts, bptt)
    return jax.tree.map(lambda s: s / n, summed)


def dynamic_perplexity(params, cfg: ModelConfig, ids_M, dyn: DynamicConfig, *, batch_size=1,
                       bptt=35, ms=None, source="split"):
    """Perplexity of a split under dynamic evaluation, and the number of targets."""
    streams = jnp.asarray(data.batchify(ids_M, batch_size, source=source))
    carry, p, total = model.init_carry(cfg, batch_size), params, 0.0
    for starts, length in step.window_parts(streams.shape[1], bptt):
        p, carry, sums = dynamic_windows(p, params, ms, cfg, carry, streams,
                                         jnp.asarray(starts), length, dyn)
        total += float(np.sum(np.asarray(sums, np.float64)))
    count = batch_size * (streams.shape[1] - 1)
    return math.exp(total / count), count


# --- neural cache -----------------------------------------------------------------

def hidden_and_log_probs(params, cfg: ModelConfig, streams_BL, bptt):
    """Static pass over streams [B, L]: the last layer's output h [B, L-1, H] at every
    position and log p_model of its target [B, L-1], the carry flowing."""
    carry, hs, lps = model.init_carry(cfg, streams_BL.shape[0]), [], []
    for starts, length in step.window_parts(streams_BL.shape[1], bptt):
        carry, (h_WTBH, lp_WBT) = _states_and_log_probs(params, cfg, carry, streams_BL,
                                                        jnp.asarray(starts), length)
        hs.append(jnp.transpose(h_WTBH, (2, 0, 1, 3)).reshape(streams_BL.shape[0], -1,
                                                               h_WTBH.shape[-1]))
        lps.append(jnp.transpose(lp_WBT, (1, 0, 2)).reshape(streams_BL.shape[0], -1))
    return jnp.concatenate(hs, axis=1), jnp.concatenate(lps, axis=1)


@functools.partial(jax.jit, static_argnames=("cfg", "bptt"))
def _states_and_log_probs(params, cfg: ModelConfig, carry, streams_BL, starts_W, bptt):
    def body(c, start):
        inputs_BT, targets_BT = step.window(streams_BL, start, bptt)
        _, h_TBH, c = model.recurrent_stack(params, cfg, c, inputs_BT)
        ce_N = model.output_cross_entropy(params, cfg, model.rows(h_TBH), targets_BT.reshape(-1))
        return c, (h_TBH, -ce_N.reshape(targets_BT.shape))
    return jax.lax.scan(body, carry, starts_W)


def cache_weights(h_QH, keys_KH, valid_QK, theta):
    """softmax over the valid keys of θ⟨h_q, h_k⟩: [Q, K], rows summing to 1 (to 0 where
    no key is valid)."""
    s_QK = jnp.where(valid_QK, theta * (h_QH @ keys_KH.T), -jnp.inf)
    m_Q1 = jnp.max(s_QK, axis=-1, keepdims=True)
    e_QK = jnp.where(valid_QK, jnp.exp(s_QK - jnp.where(jnp.isfinite(m_Q1), m_Q1, 0.0)), 0.0)
    return e_QK / jnp.maximum(jnp.sum(e_QK, axis=-1, keepdims=True), 1e-30)


def cache_distribution(h_QH, keys_KH, next_K, valid_QK, theta, vocab_size):
    """p_cache [Q, V]: the cache weights summed per next word (rows of no valid key: 0)."""
    w_QK = cache_weights(h_QH, keys_KH, valid_QK, theta)
    return w_QK @ jax.nn.one_hot(next_K, vocab_size, dtype=w_QK.dtype)


def _window_valid(size, C, start):
    """valid [C, size + C]: key k of the chunk at ``start`` (absolute position
    start + k - size) may serve query j (absolute start + j): within the last
    ``size`` positions before it, and not before the stream began."""
    j = jnp.arange(C)[:, None]
    k = jnp.arange(size + C)[None, :]
    return (k >= j) & (k < j + size) & (k >= size - start)


@functools.partial(jax.jit, static_argnames=("size", "chunk"))
def cache_target_probs(h_BMH, targets_BM, theta, size, chunk=256):
    """p_cache of each position's own target [B, M] and whether its cache held anything
    [B, M]. Position t draws on positions t - size .. t - 1 only, whose next words
    the model has already been shown; chunks of ``chunk`` queries keep memory at
    O(chunk · (size + chunk)) per stream."""
    B, M, H = h_BMH.shape
    n_chunks = -(-M // chunk)
    pad_end = n_chunks * chunk - M
    hp = jnp.pad(h_BMH, ((0, 0), (size, pad_end), (0, 0)))
    yp = jnp.pad(targets_BM, ((0, 0), (size, pad_end)), constant_values=-1)

    def one_chunk(_, start):
        keys_BKH = jax.lax.dynamic_slice_in_dim(hp, start, size + chunk, axis=1)
        next_BK = jax.lax.dynamic_slice_in_dim(yp, start, size + chunk, axis=1)
        q_BCH = jax.lax.dynamic_slice_in_dim(hp, start + size, chunk, axis=1)
        yq_BC = jax.lax.dynamic_slice_in_dim(yp, start + size, chunk, axis=1)
        valid_CK = _window_valid(size, chunk, start)
        w_BCK = jax.vmap(cache_weights, (0, 0, None, None))(q_BCH, keys_BKH, valid_CK, theta)
        hit_BCK = next_BK[:, None, :] == yq_BC[:, :, None]
        p_BC = jnp.sum(jnp.where(hit_BCK, w_BCK, 0.0), axis=-1)
        return None, (p_BC, jnp.broadcast_to(jnp.any(valid_CK, axis=-1), p_BC.shape))

    starts = jnp.arange(n_chunks, dtype=jnp.int32) * chunk
    _, (p_NBC, any_NBC) = jax.lax.scan(one_chunk, None, starts)
    p_BM = jnp.transpose(p_NBC, (1, 0, 2)).reshape(B, -1)[:, :M]
    any_BM = jnp.transpose(any_NBC, (1, 0, 2)).reshape(B, -1)[:, :M]
    return p_BM, any_BM


def mix_log_probs(logp_model, p_cache, has_cache, lam):
    """log((1 - λ) p_model + λ p_cache) where the cache held something, else log p_model."""
    # logaddexp(a, -inf) is a exactly, so λ = 0 gives the static log probs bit for bit
    with np.errstate(divide="ignore"):
        log_keep, log_lam = float(np.log1p(-lam)), float(np.log(lam))
    mixed = jnp.logaddexp(log_keep + logp_model, log_lam + jnp.log(p_cache))
    return jnp.where(has_cache, mixed, logp_model)


def _ppl(logp):
    return math.exp(-float(np.mean(np.asarray(logp, np.float64))))


def cache_perplexities(params, cfg: ModelConfig, ids_M, settings, *, batch_size=1, bptt=35,
                       source="split"):
    """[(CacheConfig, perplexity)] of a split for each of ``settings``, and the static
    perplexity and number of targets: one pass of the model, then the cache per
    (size, θ) and the mixture per λ."""
    streams = jnp.asarray(data.batchify(ids_M, batch_size, source=source))
    h_BMH, logp_BM = hidden_and_log_probs(params, cfg, streams, bptt)
    targets_BM = streams[:, 1:]
    results, cached = [], {}
    for c in settings:
        if (c.size, c.theta) not in cached:
            cached[(c.size, c.theta)] = cache_target_probs(h_BMH, targets_BM, c.theta, c.size)
        p, has = cached[(c.size, c.theta)]
        results.append((c, _ppl(mix_log_probs(logp_BM, p, has, c.lam))))
    return results, _ppl(logp_BM), int(logp_BM.size)


def cache_grid(sizes, thetas, lams):
    return [CacheConfig(n, t, lam) for n, t, lam in itertools.product(sizes, thetas, lams)]
