"""Classifier (many-to-one) and tagger (many-to-many) heads: padding invariance, gradients
vs finite differences in float64, dropout exactly with a key, empty sequences rejected,
bfloat16 matmuls that really are bf16 and stay close to float32."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from support.gradcheck import check_gradient
from support.hlo import dot_operand_dtypes

from jax_rnnlm.seqtasks import heads
from jax_rnnlm.seqtasks.encoder import EncoderConfig

# Jitted once per config and shape: hypothesis examples vary values, not shapes, so they
# reuse one compilation (eager scans recompile and made this file slow).
clf_logits = jax.jit(heads.classifier_logits, static_argnums=1)
tag_logits = jax.jit(heads.tagger_logits, static_argnums=1)
tag_loss = jax.jit(heads.tagger_loss, static_argnums=1)
EXTRA = 3  # padding steps appended


def make(pool="last", bi=True, cell="lstm", C=3, seed=0, dtype="float32", dropout=0.0):
    cfg = heads.HeadConfig(EncoderConfig((9,), (4,), hidden_dim=5, cell=cell, bidirectional=bi,
                                         init_scale=0.5, dtype=dtype),
                           num_classes=C, pool=pool, dropout=dropout)
    return cfg, heads.init_params(jax.random.key(seed), cfg)


def batch(seed, B=3, T=5, V=9, C=3):
    k_t, k_l, k_y = jax.random.split(jax.random.key(seed), 3)
    lengths = jax.random.randint(k_l, (B,), 1, T + 1)
    return (jax.random.randint(k_t, (B, T), 1, V), lengths,
            jax.random.randint(k_y, (B,), 0, C), jax.random.randint(k_y, (B, T), 0, C))


def pad_more(tokens, extra, seed):
    junk = jax.random.randint(jax.random.key(seed), (tokens.shape[0], extra), 0, 9)
    return jnp.concatenate([tokens, junk], axis=1)


def in_bfloat16(cfg):
    return dataclasses.replace(cfg, encoder=dataclasses.replace(cfg.encoder, dtype="bfloat16"))


LOSSES = {  # the loss of each head on one numpy batch, as a function of params
    "classifier": lambda cfg, tokens, lengths, labels, tags:
        lambda p: heads.classifier_loss(p, cfg, tokens, lengths, labels),
    "tagger": lambda cfg, tokens, lengths, labels, tags:
        lambda p: heads.tagger_loss(p, cfg, tokens, lengths, tags),
}


@pytest.mark.parametrize("pool,bi", [("last", True), ("mean", False), ("max", True)])
@settings(max_examples=3)
@given(seed=st.integers(0, 999))
def test_classifier_logits_ignore_appended_padding(pool, bi, seed):
    cfg, params = make(pool, bi, seed=seed)
    tokens, lengths, _, _ = batch(seed)
    np.testing.assert_allclose(clf_logits(params, cfg, pad_more(tokens, EXTRA, seed), lengths),
                               clf_logits(params, cfg, tokens, lengths), rtol=1e-5, atol=1e-6)


@settings(max_examples=4)
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


@pytest.mark.parametrize("head,pool,cell,bi", [("classifier", "last", "lstm", True),
                                               ("classifier", "max", "gru", True),
                                               ("tagger", "last", "rnn", False)])
def test_gradient_matches_finite_differences_in_float64(head, pool, cell, bi):
    cfg, params = make(pool, bi=bi, cell=cell)
    data = (np.asarray(x) for x in batch({"classifier": 1, "tagger": 2}[head]))
    check_gradient(LOSSES[head](cfg, *data), params)


def test_dropout_applies_exactly_when_a_key_is_given():
    cfg, params = make(dropout=0.5)
    no_dropout = dataclasses.replace(cfg, dropout=0.0)
    tokens, lengths, _, _ = batch(0)
    evaluation = clf_logits(params, cfg, tokens, lengths)
    np.testing.assert_array_equal(evaluation, clf_logits(params, no_dropout, tokens, lengths))
    k1, k2 = jax.random.key(1), jax.random.key(2)
    train1 = clf_logits(params, cfg, tokens, lengths, k1)
    assert not np.allclose(train1, evaluation)
    assert not np.allclose(train1, clf_logits(params, cfg, tokens, lengths, k2))
    np.testing.assert_array_equal(train1, clf_logits(params, cfg, tokens, lengths, k1))
    # A key with a dropout rate of 0 changes nothing.
    np.testing.assert_array_equal(clf_logits(params, no_dropout, tokens, lengths, k1), evaluation)


@pytest.mark.parametrize("pool", heads.POOLS)
def test_an_empty_sequence_is_rejected_naming_its_row(pool):
    cfg, params = make(pool)
    tokens, _, labels, tags = batch(0)
    lengths = jnp.array([3, 0, 2])  # max pooling over row 1 would be NaN
    with pytest.raises(ValueError, match=r"sequence 1 is empty \(length 0\)"):
        heads.classifier_loss(params, cfg, tokens, lengths, labels)
    with pytest.raises(ValueError, match=r"sequence 1 is empty"):
        heads.tagger_loss(params, cfg, tokens, lengths, tags)


@pytest.mark.parametrize("head,pool", [("classifier", "max"), ("tagger", "last")])
def test_bfloat16_config_makes_every_matmul_of_the_gradient_bf16(head, pool):
    """Forward and backward, every dot_general takes bf16 operands (none left fp32),
    and the float32 config has no bf16 dot_general at all."""
    cfg, params = make(pool)
    data = tuple(np.asarray(x) for x in batch(0))
    for config, want in ((in_bfloat16(cfg), "bf16"), (cfg, "f32")):
        dtypes = dot_operand_dtypes(jax.grad(LOSSES[head](config, *data)), params)
        assert len(dtypes) >= 9  # x w_x and h w_h per direction, the output affine, backward
        assert set(dtypes) == {(want, want)}, (config.encoder.dtype, dtypes)


@pytest.mark.parametrize("head,pool", [("classifier", "mean"), ("tagger", "last")])
def test_bfloat16_loss_stays_close_to_float32(head, pool):
    cfg = heads.HeadConfig(EncoderConfig((50,), (16,), hidden_dim=16, init_scale=0.3),
                           num_classes=5, pool=pool)
    params = heads.init_params(jax.random.key(0), cfg)
    data = tuple(np.asarray(x) for x in batch(4, B=4, T=7, V=50, C=5))
    l32, l16 = (jax.jit(LOSSES[head](c, *data))(params) for c in (cfg, in_bfloat16(cfg)))
    assert l16.dtype == jnp.float32 and l16 != l32  # fp32 result, of rounded operands
    assert abs(float(l16 - l32)) < 5e-4 * float(l32)


def test_head_config_rejects_unknown_pool():
    with pytest.raises(ValueError, match="unknown pool"):
        heads.HeadConfig(EncoderConfig((9,), (4,)), num_classes=2, pool="attention")
