"""Classifier (many-to-one) and tagger (many-to-many) heads: padding invariance,
gradients vs finite differences in float64."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gradcheck import directional_check
from hypothesis import given, settings, strategies as st

from jax_rnnlm import heads
from jax_rnnlm.seq import EncoderConfig

# Jitted once per config and shape: hypothesis examples vary values, not shapes, so they
# reuse one compilation (eager scans recompile and made this file slow).
clf_logits = jax.jit(heads.classifier_logits, static_argnums=1)
tag_logits = jax.jit(heads.tagger_logits, static_argnums=1)
tag_loss = jax.jit(heads.tagger_loss, static_argnums=1)
EXTRA = 3  # padding steps appended


def make(pool="last", bi=True, cell="lstm", C=3, seed=0):
    cfg = heads.HeadConfig(EncoderConfig((9,), (4,), hidden_dim=5, cell=cell, bidirectional=bi,
                                         init_scale=0.5), num_classes=C, pool=pool)
    return cfg, heads.init_params(jax.random.key(seed), cfg)


def batch(seed, B=3, T=5, V=9, C=3):
    k_t, k_l, k_y = jax.random.split(jax.random.key(seed), 3)
    lengths = jax.random.randint(k_l, (B,), 1, T + 1)
    return (jax.random.randint(k_t, (B, T), 1, V), lengths,
            jax.random.randint(k_y, (B,), 0, C), jax.random.randint(k_y, (B, T), 0, C))


def pad_more(tokens, extra, seed):
    junk = jax.random.randint(jax.random.key(seed), (tokens.shape[0], extra), 0, 9)
    return jnp.concatenate([tokens, junk], axis=1)


@pytest.mark.parametrize("pool,bi", [("last", True), ("mean", False), ("max", True)])
@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 999))
def test_classifier_logits_ignore_appended_padding(pool, bi, seed):
    cfg, params = make(pool, bi, seed=seed)
    tokens, lengths, _, _ = batch(seed)
    np.testing.assert_allclose(clf_logits(params, cfg, pad_more(tokens, EXTRA, seed), lengths),
                               clf_logits(params, cfg, tokens, lengths), rtol=1e-5, atol=1e-6)


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 999))
def test_tagger_logits_and_loss_ignore_appended_padding(seed):
    cfg, params = make(seed=seed)
    tokens, lengths, _, tags = batch(seed)
    longer = pad_more(tokens, EXTRA, seed)
    tags_long = pad_more(tags, EXTRA, seed + 1) % 3  # labels at padding must not count either
    logits = tag_logits(params, cfg, tokens, lengths)
    assert logits.shape == (3, 5, 3)
    np.testing.assert_allclose(tag_logits(params, cfg, longer, lengths)[:, :5], logits,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tag_loss(params, cfg, longer, lengths, tags_long),
                               tag_loss(params, cfg, tokens, lengths, tags), rtol=1e-6)


def test_tagger_loss_is_the_mean_over_real_tokens_only():
    cfg, params = make()
    tokens, _, _, tags = batch(0)
    full = tag_loss(params, cfg, tokens[:1, :2], jnp.array([2]), tags[:1, :2])
    one = tag_loss(params, cfg, tokens[:1], jnp.array([2]), tags[:1])
    np.testing.assert_allclose(one, full, rtol=1e-6)


def test_classifier_rows_are_independent():
    cfg, params = make()
    tokens, lengths, _, _ = batch(3)
    logits = clf_logits(params, cfg, tokens, lengths)
    np.testing.assert_allclose(clf_logits(params, cfg, tokens[1:2], lengths[1:2]),
                               logits[1:2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pool,cell", [("last", "lstm"), ("max", "gru")])
def test_classifier_gradient_matches_finite_differences_in_float64(pool, cell):
    cfg, params = make(pool, cell=cell)
    tokens, lengths, labels, _ = (np.asarray(x) for x in batch(1))
    directional_check(lambda p: heads.classifier_loss(p, cfg, tokens, lengths, labels), params)


def test_tagger_gradient_matches_finite_differences_in_float64():
    cfg, params = make(cell="rnn", bi=False)
    tokens, lengths, _, tags = (np.asarray(x) for x in batch(2))
    directional_check(lambda p: heads.tagger_loss(p, cfg, tokens, lengths, tags), params)


def test_dropout_in_training_needs_a_key():
    cfg = heads.HeadConfig(EncoderConfig((9,), (4,), hidden_dim=5), num_classes=2, dropout=0.5)
    params = heads.init_params(jax.random.key(0), cfg)
    tokens, lengths, _, _ = batch(0)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        heads.classifier_logits(params, cfg, tokens, lengths, train=True)


def test_head_config_rejects_unknown_pool():
    with pytest.raises(ValueError, match="unknown pool"):
        heads.HeadConfig(EncoderConfig((9,), (4,)), num_classes=2, pool="attention")
