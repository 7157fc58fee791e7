"""The language model: embedding -> recurrent stack -> affine -> softmax with loss.

Params are a plain pytree in the seed's layout::

    {"embed": [V, D],
     "layers": [{"w_x": [D, G·H], "w_h": [H, G·H], "b": [G·H]}, ...],
     "out": {"w": [H, V], "b": [V]}}          # tied: {"b": [V]}, w = embed.T

The cell of each layer is read off its weights (see ``cells.cell_name``), so
``forward`` and ``loss`` need no config: params describe themselves.
"""
import dataclasses

import jax
import jax.numpy as jnp

from jax_rnnlm.config import field
from jax_rnnlm import layers
from jax_rnnlm.cells import CELLS, init_cell


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = field(help="V, number of word (or character) types")
    embed_dim: int = field(default=200, help="D, width of the word embedding")
    hidden_dim: int = field(default=200, help="H, width of each recurrent layer")
    num_layers: int = field(default=1, help="number of stacked recurrent layers")
    cell: str = field(default="lstm", help="recurrent cell: rnn (tanh), lstm or gru")
    dropout: float = field(
        default=0.0, help="dropout on non-recurrent connections, in [0, 1) (Zaremba et al.)")
    tie_weights: bool = field(
        default=False, help="output weight = embedding transposed (needs embed-dim == hidden-dim)")
    init_scale: float = field(
        default=0.1, help="weights start uniform in [-init-scale, init-scale]")
    dtype: str = field(
        default="float32", help="matmul precision: float32, or bfloat16 (bf16 operands, fp32 "
                                "accumulation; params, loss and optimizer state stay fp32)")

    def __post_init__(self):
        for name in ("vocab_size", "embed_dim", "hidden_dim", "num_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}: choose one of {sorted(CELLS)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.tie_weights and self.embed_dim != self.hidden_dim:
            raise ValueError(f"tie_weights needs embed_dim == hidden_dim, got "
                             f"{self.embed_dim} != {self.hidden_dim}; set both equal "
                             f"or drop --tie-weights")
        if not self.init_scale > 0.0:
            raise ValueError(f"init_scale must be > 0, got {self.init_scale}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")


DTYPES = ("float32", "bfloat16")


def init_params(key, cfg: ModelConfig):
    """Fresh params for ``cfg`` (layout in the module docstring)."""
    k_embed, k_out, *k_layers = jax.random.split(key, 2 + cfg.num_layers)
    s = cfg.init_scale
    params = {
        "embed": jax.random.uniform(k_embed, (cfg.vocab_size, cfg.embed_dim),
                                    jnp.float32, -s, s),
        "layers": [init_cell(k, cfg.cell, cfg.embed_dim if i == 0 else cfg.hidden_dim,
                             cfg.hidden_dim, s) for i, k in enumerate(k_layers)],
        "out": {"b": jnp.zeros((cfg.vocab_size,), jnp.float32)},
    }
    if not cfg.tie_weights:
        params["out"]["w"] = jax.random.uniform(
            k_out, (cfg.hidden_dim, cfg.vocab_size), jnp.float32, -s, s)
    return params


def init_carry(cfg: ModelConfig, batch_size: int):
    """Zero recurrent state: a list with one carry per layer (h [B, H], or (h, c) for lstm)."""
    zero = CELLS[cfg.cell].zero_carry
    return [zero(batch_size, cfg.hidden_dim, jnp.float32) for _ in range(cfg.num_layers)]


def output_weight(params):
    """The affine weight [H, V]: its own, or the embedding transposed when tied."""
    out = params["out"]
    return out["w"] if "w" in out else params["embed"].T


def hidden_states(params, carry, tokens_BT, *, key=None, train=False, dropout=0.0,
                  dtype="float32"):
    """Embedding and recurrent stack. Returns (h [B·T, H] rows in b-major order, carry).

    ``dtype`` is the matmul precision (ModelConfig.dtype); see ``cells.matmul``.
    """
    if train and dropout > 0.0 and key is None:
        raise ValueError("train=True with dropout > 0 needs a PRNG key")
    rate = dropout if train else 0.0
    keys = list(jax.random.split(key, len(params["layers"]) + 1)) if rate else [None] * (
        len(params["layers"]) + 1)
    with jax.named_scope("embedding"):  # scopes name the parts in profiles (bench --profile)
        x = layers.dropout(keys[0], layers.embedding(params["embed"], tokens_BT.T), rate)
    new_carry = []
    with jax.named_scope("recurrence"):
        for p, c, k in zip(params["layers"], carry, keys[1:]):
            x, c = layers.recurrent_layer(p, c, x, dtype=dtype)
            x = layers.dropout(k, x, rate)
            new_carry.append(c)
        h_BTH = x.swapaxes(0, 1)
        return h_BTH.reshape(-1, h_BTH.shape[-1]), new_carry


def forward(params, carry, tokens, *, key=None, train=False, dropout=0.0, dtype="float32"):
    """Logits for every position of a window.

    tokens [B, T] int -> (logits [B, T, V], carry). ``dropout`` applies only
    when ``train`` is true, and then needs ``key``.
    """
    h_NH, carry = hidden_states(params, carry, tokens, key=key, train=train,
                                dropout=dropout, dtype=dtype)
    logits_NV = layers.affine(h_NH, output_weight(params), params["out"]["b"], dtype)
    return logits_NV.reshape(*tokens.shape, -1), carry


def token_losses(params, carry, inputs, targets, *, key=None, train=False, dropout=0.0,
                 dtype="float32"):
    """Cross-entropy of every target token: ([B, T], carry)."""
    h_NH, carry = hidden_states(params, carry, inputs, key=key, train=train,
                                dropout=dropout, dtype=dtype)
    ce_N = layers.affine_cross_entropy(h_NH, output_weight(params), params["out"]["b"],
                                       targets.reshape(-1), dtype)
    return ce_N.reshape(targets.shape), carry


def loss(params, carry, inputs, targets, *, key=None, train=False, dropout=0.0,
         dtype="float32"):
    """Mean cross-entropy over the window's B·T target tokens, and the new carry.

    inputs, targets [B, T] int. Perplexity is exp of this mean.
    """
    ce_BT, carry = token_losses(params, carry, inputs, targets, key=key, train=train,
                                dropout=dropout, dtype=dtype)
    return jnp.mean(ce_BT), carry
