"""Encoder-decoder: teacher forcing = step-by-step decoding, greedy = beam of 1, beam
scores = teacher-forced log-probs of the beams, padding invariance, float64 gradients,
empty sources rejected, bfloat16 matmuls that really are bf16 and stay close to float32."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from support.gradcheck import check_gradient
from support.hlo import dot_operand_dtypes

from jax_rnnlm.tokenizer import BOS_ID, EOS_ID, PAD_ID
from jax_rnnlm.seqtasks import seq2seq
from jax_rnnlm.seqtasks.seq2seq import Seq2seqConfig

VARIANTS = {"plain": {}, "reversed_peeky": {"reverse_source": True, "peeky": True, "cell": "gru"},
            "attention": {"attention": True, "peeky": True, "reverse_source": True}}
B, S, T, MAX_LEN = 3, 5, 4, 6   # batch, source width, target width (BOS..EOS), decoded length
FIRST_WORD = EOS_ID + 1         # the first id a target word may have


def make(variant, seed=0, dtype="float32"):
    cfg = Seq2seqConfig(src_vocab=7, tgt_vocab=6, embed_dim=3, hidden_dim=4, init_scale=0.8,
                        dtype=dtype, **VARIANTS[variant])
    return cfg, seq2seq.init_params(jax.random.key(seed), cfg)


def source(seed):
    k_s, k_l = jax.random.split(jax.random.key(seed))
    return (jax.random.randint(k_s, (B, S), 1, 7),
            jax.random.randint(k_l, (B,), 1, S + 1))


def target(seed):
    """[B, T] rows BOS y.. EOS PAD.. with random answer lengths 0..T-2."""
    k_y, k_n = jax.random.split(jax.random.key(seed + 7))
    ys = jax.random.randint(k_y, (B, T), FIRST_WORD, 6)
    n = jax.random.randint(k_n, (B, 1), 0, T - 1)
    t = jnp.arange(T)[None, :]
    body = jnp.where(t <= n, ys, jnp.where(t == n + 1, EOS_ID, PAD_ID))
    return jnp.concatenate([jnp.full((B, 1), BOS_ID), body[:, :-1]], axis=1)


@functools.partial(jax.jit, static_argnums=1)
def greedy(params, cfg, src, src_len):
    return seq2seq.greedy_decode(params, cfg, seq2seq.encode_source(params, cfg, src, src_len),
                                 MAX_LEN)


@functools.partial(jax.jit, static_argnums=(1, 4))
def beam(params, cfg, src, src_len, k):
    return seq2seq.beam_decode(params, cfg, seq2seq.encode_source(params, cfg, src, src_len),
                               MAX_LEN, k)


@functools.partial(jax.jit, static_argnums=1)
def seq_log_prob(params, cfg, src, src_len, tgt):
    """Teacher-forced log p(tgt | src) per row [B]."""
    enc = seq2seq.encode_source(params, cfg, src, src_len)
    return jnp.sum(seq2seq.target_log_probs(params, cfg, enc, tgt), axis=1)


loss = jax.jit(seq2seq.loss, static_argnums=1)
encode_source = jax.jit(seq2seq.encode_source, static_argnums=1)
decoder_step = jax.jit(seq2seq.decoder_step, static_argnums=1)
teacher_forced = jax.jit(lambda p, cfg, s, n, y: seq2seq.teacher_forced_logits(
    p, cfg, seq2seq.encode_source(p, cfg, s, n), y), static_argnums=1)


def with_bos(tokens_BT):
    return jnp.concatenate([jnp.full((tokens_BT.shape[0], 1), BOS_ID, jnp.int32), tokens_BT],
                           axis=1)


def loss_of_params(cfg, seed):
    """The loss on one numpy batch (source, target of ``seed``) as a function of params."""
    src, src_len = (np.asarray(x) for x in source(seed))
    tgt = np.asarray(target(seed))
    return lambda p: seq2seq.loss(p, cfg, src, src_len, tgt)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_teacher_forced_logits_equal_a_python_loop_of_decoder_steps(variant):
    cfg, params = make(variant)
    src, src_len = source(0)
    tgt = target(0)
    enc = encode_source(params, cfg, src, src_len)
    forced = teacher_forced(params, cfg, src, src_len, tgt[:, :-1])
    carry = enc.carry
    for t in range(T - 1):  # one decoder step at a time, no scan
        carry, logits = decoder_step(params, cfg, enc, carry, tgt[:, t])
        np.testing.assert_allclose(forced[:, t], logits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@settings(max_examples=3)
@given(seed=st.integers(0, 999))
def test_greedy_decoding_equals_beam_search_of_width_one(variant, seed):
    cfg, params = make(variant, seed)
    src, src_len = source(seed)
    toks, score = greedy(params, cfg, src, src_len)
    b_toks, b_score = beam(params, cfg, src, src_len, 1)
    np.testing.assert_array_equal(b_toks[:, 0], toks)
    np.testing.assert_allclose(b_score[:, 0], score, rtol=1e-5)


@pytest.mark.parametrize("variant", ["plain", "attention"])
@settings(max_examples=3)
@given(seed=st.integers(0, 999))
def test_decoded_scores_equal_teacher_forced_log_probs_of_the_decoded_tokens(variant, seed):
    cfg, params = make(variant, seed)
    src, src_len = source(seed)
    toks, score = greedy(params, cfg, src, src_len)
    np.testing.assert_allclose(seq_log_prob(params, cfg, src, src_len, with_bos(toks)), score,
                               rtol=1e-4, atol=1e-5)
    b_toks, b_score = beam(params, cfg, src, src_len, 3)
    assert np.all(np.diff(np.asarray(b_score), axis=1) <= 1e-6)  # best first
    for k in range(3):  # backtracking picked the tokens the scores belong to
        np.testing.assert_allclose(seq_log_prob(params, cfg, src, src_len, with_bos(b_toks[:, k])),
                                   b_score[:, k], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@settings(max_examples=3)
@given(seed=st.integers(0, 999))
def test_loss_ignores_padding_of_source_and_target(variant, seed):
    cfg, params = make(variant, seed)
    src, src_len = source(seed)
    tgt = target(seed)
    junk = jax.random.randint(jax.random.key(seed + 1), (B, 2), 1, 7)
    src_long = jnp.concatenate([src, junk], axis=1)
    tgt_long = jnp.concatenate([tgt, jnp.full((B, 2), PAD_ID, jnp.int32)], axis=1)
    np.testing.assert_allclose(loss(params, cfg, src_long, src_len, tgt_long),
                               loss(params, cfg, src, src_len, tgt), rtol=1e-5)


def test_reversed_source_reverses_within_each_length():
    cfg, params = make("reversed_peeky")
    plain = dataclasses.replace(cfg, reverse_source=False)
    src = jnp.array([[3, 4, 5, 0, 0]])
    flipped = jnp.array([[5, 4, 3, 0, 0]])
    enc = encode_source(params, cfg, src, jnp.array([3]))
    ref = encode_source(params, plain, flipped, jnp.array([3]))
    np.testing.assert_allclose(enc.h_BH, ref.h_BH, rtol=1e-6)


def test_one_to_many_decoding_from_a_vector_runs_the_same_decoder():
    cfg, params = make("attention")
    h = jnp.tanh(jax.random.normal(jax.random.key(0), (2, 4)))
    enc = seq2seq.encoded_from_vector(params, cfg, h)
    toks, score = seq2seq.greedy_decode(params, cfg, enc, 4)
    b_toks, b_score = seq2seq.beam_decode(params, cfg, enc, 4, 1)
    assert toks.shape == (2, 4)
    np.testing.assert_array_equal(b_toks[:, 0], toks)


@pytest.mark.parametrize("variant", ["attention"])
def test_loss_gradient_matches_finite_differences_in_float64(variant):
    cfg, params = make(variant)
    check_gradient(loss_of_params(cfg, 1), params)


def test_an_empty_source_is_rejected_naming_its_row():
    cfg, params = make("attention")
    src = jnp.array([[3, 4, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match=r"source sequence 1 is empty \(length 0\)"):
        seq2seq.loss(params, cfg, src, jnp.array([2, 0]), target(0)[:2])  # attention: NaN


@pytest.mark.parametrize("variant", ["plain", "reversed_peeky"])
def test_bfloat16_config_makes_every_matmul_of_the_gradient_bf16(variant):
    """Without attention (its einsums stay fp32 by design) every dot_general of the loss's
    gradient takes bf16 operands; the float32 config has no bf16 dot_general."""
    cfg, params = make(variant)
    for config, want in ((dataclasses.replace(cfg, dtype="bfloat16"), "bf16"), (cfg, "f32")):
        dtypes = dot_operand_dtypes(jax.grad(loss_of_params(config, 0)), params)
        assert len(dtypes) >= 9  # encoder, decoder cell and output affine, with backward
        assert set(dtypes) == {(want, want)}, (config.dtype, dtypes)


def test_bfloat16_loss_stays_close_to_float32():
    cfg = Seq2seqConfig(src_vocab=20, tgt_vocab=20, embed_dim=16, hidden_dim=16, init_scale=0.3,
                        **VARIANTS["attention"])
    params = seq2seq.init_params(jax.random.key(0), cfg)
    l32, l16 = (jax.jit(loss_of_params(c, 2))(params)
                for c in (cfg, dataclasses.replace(cfg, dtype="bfloat16")))
    assert l16.dtype == jnp.float32 and l16 != l32  # fp32 result, of rounded operands
    assert abs(float(l16 - l32)) < 5e-4 * float(l32)


@pytest.mark.parametrize("bad, message", [
    (dict(tgt_vocab=3), "tgt_vocab >= 4"),
    (dict(cell="transformer"), "unknown cell 'transformer'"),
    (dict(dtype="float16"), "dtype must be one of"),
])
def test_config_rejects_bad_values(bad, message):
    with pytest.raises(ValueError, match=message):
        Seq2seqConfig(**{"src_vocab": 5, "tgt_vocab": 6, **bad})
