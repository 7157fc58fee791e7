"""Heads on a masked (bi)recurrent encoder: sequence classifier and token tagger.

  many-to-one   classifier_logits: one label per sequence, from the final
                states ("last") or a masked mean / max over time of the outputs.
  many-to-many  tagger_logits: one label per real token.

Params: {"encoder": seq.init_encoder(...), "out": {"w": [H', C], "b": [C]}},
H' = H or 2H (bidirectional), C classes. Shapes: B batch, T time, F input
features per token, C classes.
"""
import dataclasses

import jax
import jax.numpy as jnp

from jax_rnnlm import layers, seq
from jax_rnnlm.config import field
from jax_rnnlm.seq import EncoderConfig

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
    s, h = cfg.encoder.init_scale, cfg.encoder.out_dim
    return {"encoder": seq.init_encoder(k_enc, cfg.encoder),
            "out": {"w": jax.random.uniform(k_out, (h, cfg.num_classes), jnp.float32, -s, s),
                    "b": jnp.zeros((cfg.num_classes,), jnp.float32)}}


def _encode(params, cfg, tokens, lengths_B, key, train):
    rate = cfg.dropout if train else 0.0
    if rate and key is None:
        raise ValueError("train=True with dropout > 0 needs a PRNG key")
    return seq.encode(params["encoder"], tokens, lengths_B, key=key, dropout=rate)


def pool(hs_TBH, finals, lengths_B, how):
    """Summary [B, H'] of a batch: final h of each direction, or masked mean / max over time."""
    if how == "last":
        return jnp.concatenate([seq.carry_h(c) for c in finals], axis=-1)
    mask_TB1 = seq.length_mask(lengths_B, hs_TBH.shape[0]).T[..., None]
    if how == "mean":
        n_B1 = jnp.maximum(lengths_B, 1).astype(hs_TBH.dtype)[:, None]
        return jnp.sum(hs_TBH, axis=0) / n_B1  # padded outputs are already zero
    return jnp.max(jnp.where(mask_TB1, hs_TBH, -jnp.inf), axis=0)


def classifier_logits(params, cfg: HeadConfig, tokens, lengths_B, *, key=None, train=False):
    """Many-to-one: tokens [B, T(, F)] int, lengths [B] -> logits [B, C]."""
    hs_TBH, finals = _encode(params, cfg, tokens, lengths_B, key, train)
    summary_BH = pool(hs_TBH, finals, lengths_B, cfg.pool)
    return layers.affine(summary_BH, params["out"]["w"], params["out"]["b"])


def classifier_loss(params, cfg: HeadConfig, tokens, lengths_B, labels_B, *, key=None,
                    train=False):
    """Mean cross-entropy of the B sequence labels."""
    logits_BC = classifier_logits(params, cfg, tokens, lengths_B, key=key, train=train)
    return jnp.mean(layers.softmax_cross_entropy(logits_BC, labels_B))


def tagger_logits(params, cfg: HeadConfig, tokens, lengths_B, *, key=None, train=False):
    """Many-to-many: tokens [B, T(, F)] int, lengths [B] -> logits [B, T, C]."""
    hs_TBH, _ = _encode(params, cfg, tokens, lengths_B, key, train)
    logits_TBC = layers.affine(hs_TBH, params["out"]["w"], params["out"]["b"])
    return logits_TBC.swapaxes(0, 1)


def tagger_loss(params, cfg: HeadConfig, tokens, lengths_B, tags_BT, *, key=None, train=False):
    """Cross-entropy averaged over the real tokens of the batch (padding weighs nothing)."""
    logits_BTC = tagger_logits(params, cfg, tokens, lengths_B, key=key, train=train)
    B, T, C = logits_BTC.shape
    ce_BT = layers.softmax_cross_entropy(logits_BTC.reshape(B * T, C),
                                         tags_BT.reshape(-1)).reshape(B, T)
    mask_BT = seq.length_mask(lengths_B, T)
    n_real = jnp.maximum(jnp.sum(lengths_B), 1).astype(ce_BT.dtype)
    return jnp.sum(jnp.where(mask_BT, ce_BT, 0.0)) / n_real
