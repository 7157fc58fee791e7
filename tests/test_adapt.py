"""Evaluation-time adaptation: dynamic evaluation and the neural cache."""
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings, strategies as st

from jax_rnnlm import adapt, model, step
from jax_rnnlm.config import ModelConfig

CFG = ModelConfig(vocab_size=13, embed_dim=6, hidden_dim=8, num_layers=2, init_scale=0.3)


def random_ids(seed, M, V=13):
    return np.asarray(jax.random.randint(jax.random.key(seed), (M,), 0, V), np.int32)


@settings(max_examples=6)
@given(B=st.integers(1, 3), bptt=st.integers(1, 7), seed=st.integers(0, 99),
       rule=st.sampled_from(adapt.RULES))
def test_dynamic_evaluation_at_zero_lr_equals_static_evaluation_exactly(B, bptt, seed, rule):
    params = model.init_params(jax.random.key(seed), CFG)
    ids = random_ids(seed, 60)
    ms = (adapt.mean_square_grads(params, CFG, ids, batch_size=B, bptt=bptt, max_windows=3)
          if rule == "rms" else None)
    dyn = adapt.DynamicConfig(rule, lr=0.0, decay=0.0)
    assert adapt.dynamic_perplexity(params, CFG, ids, dyn, batch_size=B, bptt=bptt, ms=ms) == \
        step.evaluate(params, CFG, ids, batch_size=B, bptt=bptt)


def test_dynamic_evaluation_learns_a_text_that_repeats():
    """An 8-token random text repeated 20 times: the second half scores better once the
    first has been adapted on (an untrained model sees no difference between them)."""
    params = model.init_params(jax.random.key(0), CFG)
    text = random_ids(1, 8)
    streams = jnp.asarray(np.concatenate([text] * 20 + [text[:1]])[None, :])
    starts = jnp.arange(32, dtype=jnp.int32) * 5
    carry = model.init_carry(CFG, 1)

    def second_half(dyn):
        _, _, sums = adapt.dynamic_windows(params, params, None, CFG, carry, streams, starts,
                                           5, dyn)
        return float(np.sum(sums[16:]))
    static = second_half(adapt.DynamicConfig("sgd", 0.0))
    assert second_half(adapt.DynamicConfig("sgd", 1.0)) < 0.85 * static


def test_dynamic_evaluation_leaves_the_given_params_unchanged():
    params = model.init_params(jax.random.key(0), CFG)
    before = jax.tree.map(np.array, params)
    adapt.dynamic_perplexity(params, CFG, random_ids(2, 40), adapt.DynamicConfig("sgd", 1.0),
                             bptt=5)
    jax.tree.map(np.testing.assert_array_equal, params, before)


def reference_cache_probs(h_MH, y_M, theta, size):
    """p_cache of each position's target by a loop over positions, in float64."""
    h, out = np.asarray(h_MH, np.float64), []
    for t in range(len(y_M)):
        keys = range(max(0, t - size), t)
        if not keys:
            out.append((0.0, False))
            continue
        s = np.array([theta * h[t] @ h[i] for i in keys])
        w = np.exp(s - s.max())
        w /= w.sum()
        out.append((sum(wi for wi, i in zip(w, keys) if y_M[i] == y_M[t]), True))
    return np.array([p for p, _ in out]), np.array([v for _, v in out])


@settings(max_examples=10)
@given(M=st.integers(1, 30), size=st.integers(1, 12), chunk=st.integers(1, 9),
       theta=st.floats(0.0, 2.0), seed=st.integers(0, 99))
def test_cache_probabilities_equal_a_loop_over_the_past_positions(M, size, chunk, theta, seed):
    k1, k2 = jax.random.split(jax.random.key(seed))
    h = jax.random.normal(k1, (2, M, 4))
    y = jax.random.randint(k2, (2, M), 0, 5)
    p, has = adapt.cache_target_probs(h, y, theta, size, chunk)
    for b in range(2):
        p_ref, has_ref = reference_cache_probs(h[b], np.asarray(y[b]), theta, size)
        np.testing.assert_allclose(p[b], p_ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(has[b], has_ref)


@settings(max_examples=6)
@given(M=st.integers(2, 40), seed=st.integers(0, 99), data=st.data())
def test_the_cache_never_uses_a_word_before_it_was_seen(M, seed, data):
    """Changing the states and words from position t0 on leaves every earlier
    position's cache probability as it was."""
    t0 = data.draw(st.integers(1, M - 1))
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    h = jax.random.normal(k1, (1, M, 4))
    y = jax.random.randint(k2, (1, M), 0, 5)
    h2 = h.at[:, t0:].set(jax.random.normal(k3, (1, M - t0, 4)))
    y2 = y.at[:, t0:].set((y[:, t0:] + 1) % 5)
    p, _ = adapt.cache_target_probs(h, y, 0.7, 8, 4)
    p2, _ = adapt.cache_target_probs(h2, y2, 0.7, 8, 4)
    np.testing.assert_array_equal(p[:, :t0], p2[:, :t0])


@settings(max_examples=6)
@given(Q=st.integers(1, 6), K=st.integers(1, 10), seed=st.integers(0, 99))
def test_the_cache_distribution_sums_to_one_and_matches_the_target_path(Q, K, seed):
    with jax.enable_x64(True):
        ks = jax.random.split(jax.random.key(seed), 3)
        h = jax.random.normal(ks[0], (Q, 3), jnp.float64)
        keys = jax.random.normal(ks[1], (K, 3), jnp.float64)
        nxt = jax.random.randint(ks[2], (K,), 0, 7)
        valid = np.asarray(jax.random.bernoulli(ks[0], 0.6, (Q, K)))
        p = np.asarray(adapt.cache_distribution(h, keys, nxt, valid, 0.5, 7))
    sums = p.sum(axis=1)
    np.testing.assert_allclose(sums[valid.any(axis=1)], 1.0, rtol=1e-12)
    np.testing.assert_array_equal(sums[~valid.any(axis=1)], 0.0)


def test_mixing_with_lambda_zero_gives_the_static_log_probs_bit_for_bit():
    logp = jnp.log(jax.random.uniform(jax.random.key(0), (3, 50), minval=1e-6))
    p_cache = jax.random.uniform(jax.random.key(1), (3, 50))
    has = jax.random.bernoulli(jax.random.key(2), 0.8, (3, 50))
    np.testing.assert_array_equal(adapt.mix_log_probs(logp, p_cache, has, 0.0), logp)
    mixed = adapt.mix_log_probs(logp, p_cache, has, 0.25)
    np.testing.assert_allclose(np.exp(mixed), np.where(has, 0.75 * np.exp(logp)
                                                       + 0.25 * p_cache, np.exp(logp)),
                               rtol=1e-5)


def test_cache_perplexity_at_lambda_zero_is_the_static_one():
    params = model.init_params(jax.random.key(3), CFG)
    ids = random_ids(4, 70)
    settings_ = adapt.cache_grid([5, 20], [0.3], [0.0, 0.2])
    results, static, count = adapt.cache_perplexities(params, CFG, ids, settings_, bptt=6)
    assert count == 69
    np.testing.assert_allclose(static, step.evaluate(params, CFG, ids, batch_size=1, bptt=6)[0],
                               rtol=1e-6)
    for c, ppl in results:
        assert (ppl == static) == (c.lam == 0.0)
