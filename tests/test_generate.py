"""Sampling and scoring: determinism, greedy limits, filters, skip list, the sampled
distribution (chi-square), log-prob consistency, bf16 models."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jax_rnnlm import checkpoint, data, generate, model, tokenizer
from jax_rnnlm.config import ModelConfig

CFG = ModelConfig(vocab_size=17, embed_dim=8, hidden_dim=8, num_layers=2, cell="lstm",
                  init_scale=0.5)
PARAMS = model.init_params(jax.random.key(0), CFG)
PROMPT = jnp.array([[1, 2, 3], [4, 5, 6]])


def run(key=0, **kw):
    toks, _ = generate.sample(PARAMS, CFG, model.init_carry(CFG, 2), jax.random.key(key),
                              PROMPT, length=12, **kw)
    return np.asarray(toks)


def greedy_by_hand():
    logits, carry = generate.prime(PARAMS, CFG, model.init_carry(CFG, 2), PROMPT)
    out = []
    for _ in range(12):
        tok = jnp.argmax(logits, axis=-1)
        out.append(tok)
        logits, carry = generate.prime(PARAMS, CFG, carry, tok[:, None])
    return np.stack(out, axis=1)


def test_same_seed_same_sample_other_seed_other_sample():
    assert run(1).shape == (2, 12)
    np.testing.assert_array_equal(run(1), run(1))
    assert not np.array_equal(run(1), run(2))


def test_temperature_zero_is_greedy_and_equals_a_python_loop():
    np.testing.assert_array_equal(run(temperature=0.0), greedy_by_hand())


def test_tiny_temperature_and_top_k_one_equal_greedy():
    np.testing.assert_array_equal(run(5, temperature=1e-4), greedy_by_hand())
    np.testing.assert_array_equal(run(5, top_k=1), greedy_by_hand())


def test_skipped_tokens_are_never_sampled():
    toks = run(3, skip_ids=(0, 1, 2, 3, 4, 5, 6, 7), temperature=2.0)
    assert toks.min() >= 8


def test_skip_list_rejections_do_not_advance_the_state():
    greedy = greedy_by_hand()
    banned = int(greedy[0, 0])
    toks = run(temperature=0.0, skip_ids=(banned,))
    # The first token is the runner-up of the same distribution, computed from the same state.
    logits, _ = generate.prime(PARAMS, CFG, model.init_carry(CFG, 2), PROMPT)
    assert toks[0, 0] == int(jnp.argsort(logits[0])[-2])


@settings(max_examples=20)
@given(k=st.integers(1, 16), p=st.floats(0.05, 1.0), seed=st.integers(0, 100))
def test_filters_keep_the_right_tokens(k, p, seed):
    logits = jax.random.normal(jax.random.key(seed), (1, 17)) * 3
    kept = np.isfinite(generate.filter_logits(logits, top_k=k))[0]
    assert kept.sum() == k and kept[np.argsort(-np.asarray(logits[0]))[:k]].all()
    nucleus = np.isfinite(generate.filter_logits(logits, top_p=p))[0]
    probs = np.sort(np.asarray(jax.nn.softmax(logits[0])))[::-1]
    n = int(nucleus.sum())
    assert probs[:n].sum() >= p - 1e-5 and (n == 1 or probs[:n - 1].sum() < p + 1e-5)


def test_log_prob_matches_the_loss_and_chains_over_pieces():
    toks = jax.random.randint(jax.random.key(9), (2, 11), 0, 17)
    lp, _ = generate.log_prob(PARAMS, CFG, model.init_carry(CFG, 2), toks)
    loss, _ = model.loss(PARAMS, CFG, model.init_carry(CFG, 2), toks[:, :-1], toks[:, 1:])
    np.testing.assert_allclose(-lp.mean(), loss, rtol=1e-5)
    first, carry = generate.log_prob(PARAMS, CFG, model.init_carry(CFG, 2), toks[:, :6])
    second, _ = generate.log_prob(PARAMS, CFG, carry, toks[:, 5:])
    np.testing.assert_allclose(jnp.concatenate([first, second], axis=1), lp, rtol=1e-5)
    assert (lp <= 0).all()


def chi_square(counts, probs):
    expected = probs * counts.sum()
    return float(np.sum((counts - expected) ** 2 / expected))


def chi_square_critical(df, z=3.09):
    """Upper 0.1% point of chi-square with ``df`` degrees of freedom (Wilson-Hilferty)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_sampled_frequencies_follow_softmax_of_logits_over_temperature(temperature):
    """A peaked distribution (far from uniform), 20,000 draws: the counts pass a chi-square
    test against softmax(logits / t) at the 0.1% level, and fail it against the
    distribution of the other temperature, so a wrong temperature cannot pass."""
    logits = jnp.array([[3.0, 2.0, 1.0, 0.5, 0.0, -0.5, -1.0, -2.0]])
    keys = jax.random.split(jax.random.key(7), 20_000)
    draws = jax.vmap(lambda k: generate.pick(k, logits, temperature=temperature))(keys)[:, 0]
    counts = np.bincount(np.asarray(draws), minlength=8).astype(np.float64)
    probs = lambda t: np.asarray(jax.nn.softmax(logits[0] / t), np.float64)
    critical = chi_square_critical(df=7)
    assert chi_square(counts, probs(temperature)) < critical
    assert chi_square(counts, probs(1.5 - temperature)) > 10 * critical


def test_a_bf16_model_scores_and_samples_in_bf16():
    """score and generate use the model's matmul dtype, as eval does."""
    bf16 = ModelConfig(**{**CFG.__dict__, "dtype": "bfloat16"})
    toks = jax.random.randint(jax.random.key(9), (2, 11), 0, 17)
    lp16, _ = generate.log_prob(PARAMS, bf16, model.init_carry(bf16, 2), toks)
    loss16, _ = model.loss(PARAMS, bf16, model.init_carry(bf16, 2), toks[:, :-1], toks[:, 1:])
    np.testing.assert_allclose(-lp16.mean(), loss16, rtol=1e-6)
    lp32, _ = generate.log_prob(PARAMS, CFG, model.init_carry(CFG, 2), toks)
    assert not np.allclose(lp16, lp32, rtol=1e-6, atol=0)  # it really ran in bf16


def test_scoring_an_empty_text_is_a_clear_error():
    vocab = data.Vocab(tuple(f"w{i}" for i in range(16)) + (tokenizer.EOS,))
    run = checkpoint.Trained(CFG, "word", "test", vocab, PARAMS, 0)
    with pytest.raises(ValueError, match="stdin: nothing to score"):
        list(generate.score_text(run, "", source="stdin"))
    with pytest.raises(ValueError, match="nothing to score"):
        list(generate.score_text(run, "", per="text"))
