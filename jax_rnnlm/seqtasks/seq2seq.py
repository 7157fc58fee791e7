"""Encoder-decoder (sequence-to-sequence) models, as in the numpy textbook's chapter 7-8.

  encoder   embedding -> masked recurrent layer over the source; its final carry
            starts the decoder. ``reverse_source`` feeds each source row back to
            front (within its length), which shortens the path from the first
            source tokens to the first answer tokens.
  decoder   embedding -> recurrent step -> affine, one target token a step,
            teacher-forced in training (input: the gold previous token).
  peeky     the encoder's final h is concatenated to the decoder's input and to
            the affine's input at every step, not only given as h_0.
  attention dot-product attention (Luong): scores h_dec · hs_enc over the real
            source steps, softmax, context = weighted sum of hs_enc; the affine
            reads [context ; h_dec].

Target rows are [BOS, y_1, ..., y_n, EOS, PAD...] with the ids of ``data``
(PAD_ID, BOS_ID, EOS_ID, as ``data.Vocab.by_frequency`` puts them); the decoder
reads tgt[:, :-1] and predicts tgt[:, 1:], and the loss masks PAD. The matmuls of
the cells and of the output affine run at ``cfg.dtype``.

Params: {"src_embed": [V_src, D], "encoder": cell, "tgt_embed": [V, D],
"decoder": cell (input D [+H peeky]), "out": {"w": [H (+H peeky)(+H attention), V], "b": [V]}}.
Here T is the target (and decoded) length, S the source length, V the target vocabulary.
"""
import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jax_rnnlm import layers
from jax_rnnlm.cells import CELLS, hidden, init_cell, uniform, zero_carry
from jax_rnnlm.config import check_recurrent
from jax_rnnlm.settings import field
from jax_rnnlm.tokenizer import BOS_ID, EOS_ID, PAD_ID
from jax_rnnlm.seqtasks.encoder import DTYPE_HELP, check_nonempty, padded_layer, reverse_padded

NEVER_EMITTED = (PAD_ID, BOS_ID)   # never targets, so decoding never picks them
MIN_TGT_VOCAB = EOS_ID + 2         # PAD, BOS, EOS and at least one token to emit


@dataclasses.dataclass(frozen=True)
class Seq2seqConfig:
    src_vocab: int = field(help="source vocabulary size")
    tgt_vocab: int = field(help=f"V, target vocabulary size (ids {PAD_ID}, {BOS_ID}, {EOS_ID} "
                                f"are PAD, BOS, EOS)")
    embed_dim: int = field(default=16, help="D, embedding width (source and target)")
    hidden_dim: int = field(default=128, help="H, encoder and decoder width")
    cell: str = field(default="lstm", help="rnn, lstm or gru")
    reverse_source: bool = field(default=False, help="encode each source row back to front")
    peeky: bool = field(default=False, help="feed the encoder's final h at every decoder step")
    attention: bool = field(default=False, help="dot-product attention over encoder outputs")
    init_scale: float = field(default=0.1, help="weights start uniform in [-s, s]")
    dtype: str = field(default="float32", help=DTYPE_HELP)

    def __post_init__(self):
        if self.src_vocab < 1 or self.tgt_vocab < MIN_TGT_VOCAB:
            raise ValueError(f"need src_vocab >= 1 and tgt_vocab >= {MIN_TGT_VOCAB} (PAD, BOS, "
                             f"EOS + one), got {self.src_vocab}, {self.tgt_vocab}")
        if min(self.embed_dim, self.hidden_dim) < 1:
            raise ValueError("embed_dim and hidden_dim must be >= 1")
        check_recurrent(self)


class Encoded(NamedTuple):
    """What the decoder sees of the source."""
    hs_BSH: Any     # encoder outputs, zero at padding (attention reads these)
    mask_BS: Any    # True at real source steps
    carry: Any      # decoder's initial carry
    h_BH: Any       # summary vector fed at every step when peeky


def init_params(key, cfg: Seq2seqConfig):
    """Fresh params for ``cfg`` (layout in the module docstring), uniform in [-s, s]."""
    ks = jax.random.split(key, 5)
    s, d, h = cfg.init_scale, cfg.embed_dim, cfg.hidden_dim
    out_in = h * (1 + cfg.peeky + cfg.attention)
    return {"src_embed": uniform(ks[0], (cfg.src_vocab, d), s),
            "encoder": init_cell(ks[1], cfg.cell, d, h, s),
            "tgt_embed": uniform(ks[2], (cfg.tgt_vocab, d), s),
            "decoder": init_cell(ks[3], cfg.cell, d + h * cfg.peeky, h, s),
            "out": {"w": uniform(ks[4], (out_in, cfg.tgt_vocab), s),
                    "b": jnp.zeros((cfg.tgt_vocab,), jnp.float32)}}


def encode_source(params, cfg: Seq2seqConfig, src_BS, lengths_B):
    """Source ids [B, S], lengths [B] -> Encoded (final carry = state after the last real step).

    An empty source row is a ValueError naming it when the lengths are concrete
    (attention over no step is NaN); under jit that check is the caller's.
    """
    check_nonempty(lengths_B, "source sequence")
    x_SBD = layers.embedding(params["src_embed"], src_BS.T)
    if cfg.reverse_source:
        x_SBD = reverse_padded(x_SBD, lengths_B)
    hs_SBH, carry = padded_layer(cfg.cell, params["encoder"], x_SBD, lengths_B, dtype=cfg.dtype)
    mask_BS = layers.length_mask(lengths_B, src_BS.shape[1])
    return Encoded(hs_SBH.swapaxes(0, 1), mask_BS, carry, hidden(carry))


def encoded_from_vector(params, cfg: Seq2seqConfig, h_BH):
    """Encoded for one-to-many decoding from a single vector per row (no source sequence).

    The vector is the decoder's h_0 (c_0 = 0 for lstm), its peeky input, and the
    one step attention can look at.
    """
    zero = zero_carry(cfg.cell, h_BH.shape[0], h_BH.shape[1], h_BH.dtype)
    carry = (h_BH, zero[1]) if isinstance(zero, tuple) else h_BH
    return Encoded(h_BH[:, None, :], jnp.ones((h_BH.shape[0], 1), bool), carry, h_BH)


def attend(hs_BSH, mask_BS, h_BH):
    """Dot-product attention: context [B, H] = Σ_s softmax_s(h · hs_s) hs_s over real steps.

    Both einsums stay float32 whatever ``cfg.dtype``: they are batched [S]-long dot
    products per row, not the matmuls that dominate the cost, and bf16 scores
    (8 mantissa bits) would blur the softmax that picks the source step.
    """
    scores_BS = jnp.einsum("bsh,bh->bs", hs_BSH, h_BH)
    scores_BS = jnp.where(mask_BS, scores_BS, -jnp.inf)
    return jnp.einsum("bs,bsh->bh", jax.nn.softmax(scores_BS, axis=-1), hs_BSH)


def decoder_step(params, cfg: Seq2seqConfig, enc: Encoded, carry, y_B):
    """One decoder step: previous token ids [B] -> (carry, logits [B, V])."""
    p = params["decoder"]
    x_BD = layers.embedding(params["tgt_embed"], y_B)
    if cfg.peeky:
        x_BD = jnp.concatenate([x_BD, enc.h_BH], axis=-1)
    carry, h_BH = CELLS[cfg.cell].step(p, carry, x_BD, cfg.dtype)
    feats = [h_BH]
    if cfg.peeky:
        feats.append(enc.h_BH)
    if cfg.attention:
        feats.insert(0, attend(enc.hs_BSH, enc.mask_BS, h_BH))
    logits_BV = layers.affine(jnp.concatenate(feats, axis=-1), params["out"]["w"],
                              params["out"]["b"], cfg.dtype)
    return carry, logits_BV


def teacher_forced_logits(params, cfg: Seq2seqConfig, enc: Encoded, tgt_in_BT):
    """Decoder over gold previous tokens [B, T] -> logits [B, T, V] (one scan of decoder_step)."""
    def body(c, y_B):
        return decoder_step(params, cfg, enc, c, y_B)
    _, logits_TBV = jax.lax.scan(body, enc.carry, tgt_in_BT.T)
    return logits_TBV.swapaxes(0, 1)


def target_log_probs(params, cfg: Seq2seqConfig, enc: Encoded, tgt_BT):
    """log p(tgt[:, t+1] | tgt[:, :t+1], source) [B, T-1], zero where the target is PAD."""
    logits_BTV = teacher_forced_logits(params, cfg, enc, tgt_BT[:, :-1])
    B, T, V = logits_BTV.shape
    ce_BT = layers.softmax_cross_entropy(logits_BTV.reshape(B * T, V),
                                         tgt_BT[:, 1:].reshape(-1)).reshape(B, T)
    return jnp.where(tgt_BT[:, 1:] != PAD_ID, -ce_BT, 0.0)


def decoder_loss(params, cfg: Seq2seqConfig, enc: Encoded, tgt_BT):
    """Cross-entropy per real target token (EOS included, PAD excluded), teacher-forced,
    for any Encoded (a source's, or ``encoded_from_vector``'s)."""
    logp_BT = target_log_probs(params, cfg, enc, tgt_BT)
    n = jnp.maximum(jnp.sum(tgt_BT[:, 1:] != PAD_ID), 1).astype(logp_BT.dtype)
    return -jnp.sum(logp_BT) / n


def loss(params, cfg: Seq2seqConfig, src_BS, src_len_B, tgt_BT):
    """``decoder_loss`` of the encoded source ids [B, S] (lengths [B]) and targets [B, T]."""
    return decoder_loss(params, cfg, encode_source(params, cfg, src_BS, src_len_B), tgt_BT)


def _step_log_probs(logits_BV, done_B):
    """Log-probs of the next token, normalised over all V as in training. A live row may
    not emit PAD or BOS (they are never targets); a finished row emits only PAD at no cost."""
    logp_BV = jax.nn.log_softmax(logits_BV, axis=-1)
    ids_1V = jnp.arange(logp_BV.shape[-1])[None]
    live_BV = jnp.where(jnp.isin(ids_1V, jnp.array(NEVER_EMITTED)), -jnp.inf, logp_BV)
    finished_1V = jnp.where(ids_1V == PAD_ID, 0.0, -jnp.inf).astype(logp_BV.dtype)
    return jnp.where(done_B[:, None], finished_1V, live_BV)


def greedy_decode(params, cfg: Seq2seqConfig, enc: Encoded, max_len):
    """Argmax token each step from BOS: (tokens [B, T], log-prob [B]), T = ``max_len``;
    PAD after EOS. The log-prob is the teacher-forced one of the emitted tokens up to EOS.
    """
    B = enc.h_BH.shape[0]

    def body(state, _):
        carry, y_B, done_B, score_B = state
        carry, logits_BV = decoder_step(params, cfg, enc, carry, y_B)
        logp_BV = _step_log_probs(logits_BV, done_B)
        y_B = jnp.argmax(logp_BV, axis=-1).astype(jnp.int32)
        score_B = score_B + jnp.take_along_axis(logp_BV, y_B[:, None], axis=-1)[:, 0]
        return (carry, y_B, done_B | (y_B == EOS_ID), score_B), y_B

    init = (enc.carry, jnp.full((B,), BOS_ID, jnp.int32), jnp.zeros((B,), bool),
            jnp.zeros((B,), enc.h_BH.dtype))
    (_, _, _, score_B), ys_TB = jax.lax.scan(body, init, None, length=max_len)
    return ys_TB.T, score_B


def beam_decode(params, cfg: Seq2seqConfig, enc: Encoded, max_len, beam_size):
    """Beam search without length normalisation: (tokens [B, K, T], log-prob [B, K]), best
    first, T = ``max_len``, K = ``beam_size``.

    Each step keeps the K best of the K·V one-token extensions; a finished beam
    (it emitted EOS) only extends with PAD at no cost, so it competes with its
    final score. With K = 1 this is ``greedy_decode``.
    """
    B, K = enc.h_BH.shape[0], beam_size
    V = params["out"]["b"].shape[0]
    emittable = V - len(NEVER_EMITTED)
    if not 1 <= K <= emittable:
        raise ValueError(f"beam_size must be in [1, {emittable}] (V = {V} less PAD and BOS, "
                         f"which are never emitted), got {K}")
    enc_K = jax.tree.map(lambda x: jnp.repeat(x, K, axis=0), enc)  # row b·K + k
    dtype = enc.h_BH.dtype
    # Only beam 0 is live at the start, so the first step does not pick K copies of one token.
    score0_BK = jnp.broadcast_to(jnp.where(jnp.arange(K) == 0, 0.0, -jnp.inf).astype(dtype),
                                 (B, K))

    def body(state, _):
        carry, y_BK, done_BK, score_BK = state
        carry, logits = decoder_step(params, cfg, enc_K, carry, y_BK.reshape(-1))
        logp_BKV = _step_log_probs(logits, done_BK.reshape(-1)).reshape(B, K, V)
        total_BKV = score_BK[..., None] + logp_BKV
        score_BK, flat_BK = jax.lax.top_k(total_BKV.reshape(B, K * V), K)
        parent_BK, y_BK = flat_BK // V, (flat_BK % V).astype(jnp.int32)
        rows = (jnp.arange(B, dtype=parent_BK.dtype)[:, None] * K + parent_BK).reshape(-1)
        carry = jax.tree.map(lambda x: x[rows], carry)
        done_BK = jnp.take_along_axis(done_BK, parent_BK, axis=1) | (y_BK == EOS_ID)
        return (carry, y_BK, done_BK, score_BK), (y_BK, parent_BK)

    init = (enc_K.carry, jnp.full((B, K), BOS_ID, jnp.int32), jnp.zeros((B, K), bool), score0_BK)
    (_, _, _, score_BK), (ys_TBK, parents_TBK) = jax.lax.scan(body, init, None, length=max_len)

    def back(k_BK, step):  # follow parent pointers from the last step to the first
        y_BK, parent_BK = step
        return (jnp.take_along_axis(parent_BK, k_BK, axis=1),
                jnp.take_along_axis(y_BK, k_BK, axis=1))

    k_BK = jnp.broadcast_to(jnp.arange(K, dtype=parents_TBK.dtype)[None], (B, K))
    _, toks_TBK = jax.lax.scan(back, k_BK, (ys_TBK, parents_TBK), reverse=True)
    return toks_TBK.transpose(1, 2, 0), score_BK


def strip(tokens_T):
    """Decoded ids up to (not including) the first EOS, as a Python list."""
    out = []
    for t in tokens_T:
        if int(t) == EOS_ID:
            break
        out.append(int(t))
    return out
