"""Heads on the masked (bi)recurrent encoder: a sequence classifier and a token tagger.

  many-to-one   classifier_logits: one label per sequence, from the final states
                ("last") or a masked mean / max over time of the outputs.
  many-to-many  tagger_logits: one label per real token.

Params: {"encoder": encoder.init_encoder(...), "out": {"w": [H', C], "b": [C]}}.
Every function takes ``(params, cfg, tokens, lengths, ..., key=None)``: dropout (rate
``cfg.dropout``) applies exactly when a PRNG ``key`` is given, and the matmul
precision is ``cfg.encoder.dtype``, for the encoder and the output affine alike.

Empty sequences (a length < 1) are rejected with a ValueError naming the row
whenever the lengths are concrete; under ``jax.jit`` they are a Tracer and the
check is the caller's (``fit.pad_batch`` rejects them when it builds a batch).
"""
import dataclasses

import jax
import jax.numpy as jnp

from jax_rnnlm import layers
from jax_rnnlm.cells import hidden, uniform
from jax_rnnlm.config import field
from jax_rnnlm.seqtasks.encoder import (EncoderConfig, check_nonempty, encoder_states,
                                        init_encoder)

POOLS = ("last", "mean", "max")


@dataclasses.dataclass(frozen=True)
class HeadConfig:
    encoder: EncoderConfig = field(help="embedding + recurrent stack under the head")
    num_classes: int = field(help="C, number of labels")
    pool: str = field(default="last", help="classifier summary: last (final states), mean or max")
    dropout: float = field(default=0.0, help="dropout on embeddings and layer outputs, [0, 1)")

    def __post_init__(self):
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        if self.pool not in POOLS:
            raise ValueError(f"unknown pool {self.pool!r}: choose one of {POOLS}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


def init_params(key, cfg: HeadConfig):
    """Encoder params and an output affine [H', C] (zero bias)."""
    k_enc, k_out = jax.random.split(key)
    return {"encoder": init_encoder(k_enc, cfg.encoder),
            "out": {"w": uniform(k_out, (cfg.encoder.out_dim, cfg.num_classes),
                                 cfg.encoder.init_scale),
                    "b": jnp.zeros((cfg.num_classes,), jnp.float32)}}


def _states(params, cfg: HeadConfig, tokens, lengths_B, key):
    """The encoder's (hs_TBH', finals) for a batch whose rows are not empty."""
    check_nonempty(lengths_B)
    return encoder_states(params["encoder"], cfg.encoder, tokens, lengths_B, key, cfg.dropout)


def _output(params, cfg: HeadConfig, h_NH):
    """The output affine [..., H'] -> logits [..., C], at the encoder's matmul precision."""
    return layers.affine(h_NH, params["out"]["w"], params["out"]["b"], cfg.encoder.dtype)


def pool(hs_TBH, finals, lengths_B, how):
    """Summary [B, H'] of a batch: final h of each direction, or masked mean / max over time."""
    if how == "last":
        return jnp.concatenate([hidden(c) for c in finals], axis=-1)
    if how == "mean":  # padded outputs are already zero; max(·, 1) keeps a traced empty row finite
        n_B1 = jnp.maximum(lengths_B, 1).astype(hs_TBH.dtype)[:, None]
        return jnp.sum(hs_TBH, axis=0) / n_B1
    mask_TB1 = layers.length_mask(lengths_B, hs_TBH.shape[0]).T[..., None]
    return jnp.max(jnp.where(mask_TB1, hs_TBH, -jnp.inf), axis=0)


def classifier_logits(params, cfg: HeadConfig, tokens, lengths_B, key=None):
    """Many-to-one: tokens [B, T(, F)] int, lengths [B] -> logits [B, C]."""
    hs_TBH, finals = _states(params, cfg, tokens, lengths_B, key)
    return _output(params, cfg, pool(hs_TBH, finals, lengths_B, cfg.pool))


def classifier_loss(params, cfg: HeadConfig, tokens, lengths_B, labels_B, key=None):
    """Mean cross-entropy of the B sequence labels."""
    logits_BC = classifier_logits(params, cfg, tokens, lengths_B, key)
    return jnp.mean(layers.softmax_cross_entropy(logits_BC, labels_B))


def tagger_logits(params, cfg: HeadConfig, tokens, lengths_B, key=None):
    """Many-to-many: tokens [B, T(, F)] int, lengths [B] -> logits [B, T, C]."""
    hs_TBH, _ = _states(params, cfg, tokens, lengths_B, key)
    return _output(params, cfg, hs_TBH).swapaxes(0, 1)


def tagger_loss(params, cfg: HeadConfig, tokens, lengths_B, tags_BT, key=None):
    """Cross-entropy averaged over the real tokens of the batch (padding weighs nothing)."""
    logits_BTC = tagger_logits(params, cfg, tokens, lengths_B, key)
    B, T, C = logits_BTC.shape
    ce_BT = layers.softmax_cross_entropy(logits_BTC.reshape(B * T, C),
                                         tags_BT.reshape(-1)).reshape(B, T)
    mask_BT = layers.length_mask(lengths_B, T)
    n_real = jnp.maximum(jnp.sum(lengths_B), 1).astype(ce_BT.dtype)
    return jnp.sum(jnp.where(mask_BT, ce_BT, 0.0)) / n_real
