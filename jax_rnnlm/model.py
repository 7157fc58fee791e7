"""The language model: embedding -> recurrent stack -> affine -> softmax with loss.

Params are a plain pytree in the seed's layout::

    {"embed": [V, D],
     "layers": [{"w_x": [D, G·H], "w_h": [H, G·H], "b": [G·H]}, ...],
     "out": {"w": [H, V], "b": [V]}}          # tied: {"b": [V]}, w = embed.T

Every function takes ``(params, cfg, carry, ...)`` with ``cfg`` a ModelConfig
(static under ``jax.jit``): the matmul precision comes from ``cfg.dtype``, and
dropout (rate ``cfg.dropout``) applies exactly when a PRNG ``key`` is given, so
training passes a key and evaluation does not.
"""
import jax
import jax.numpy as jnp

from jax_rnnlm import layers
from jax_rnnlm.cells import CELLS, init_cell, uniform
from jax_rnnlm.config import ModelConfig


def init_params(key, cfg: ModelConfig):
    """Fresh params for ``cfg`` (layout in the module docstring)."""
    k_embed, k_out, *k_layers = jax.random.split(key, 2 + cfg.num_layers)
    s = cfg.init_scale
    params = {
        "embed": uniform(k_embed, (cfg.vocab_size, cfg.embed_dim), s),
        "layers": [init_cell(k, cfg.cell, cfg.embed_dim if i == 0 else cfg.hidden_dim,
                             cfg.hidden_dim, s) for i, k in enumerate(k_layers)],
        "out": {"b": jnp.zeros((cfg.vocab_size,), jnp.float32)},
    }
    if not cfg.tie_weights:
        params["out"]["w"] = uniform(k_out, (cfg.hidden_dim, cfg.vocab_size), s)
    return params


def init_carry(cfg: ModelConfig, batch_size: int):
    """Zero recurrent state: a list with one carry per layer (h [B, H], or (h, c) for lstm)."""
    zero = CELLS[cfg.cell].zero_carry
    return [zero(batch_size, cfg.hidden_dim, jnp.float32) for _ in range(cfg.num_layers)]


def output_weight(params):
    """The affine weight [H, V]: its own, or the embedding transposed when tied."""
    out = params["out"]
    return out["w"] if "w" in out else params["embed"].T


def hidden_states(params, cfg: ModelConfig, carry, tokens_BT, key=None):
    """Embedding and recurrent stack. Returns (h [B·T, H] rows in b-major order, carry)."""
    n = len(params["layers"]) + 1
    rate = cfg.dropout if key is not None else 0.0
    keys = list(jax.random.split(key, n)) if rate else [None] * n
    with jax.named_scope("embedding"):  # scopes name the parts in profiles (bench --profile)
        x = layers.dropout(keys[0], layers.embedding(params["embed"], tokens_BT.T), rate)
    new_carry = []
    with jax.named_scope("recurrence"):
        for p, c, k in zip(params["layers"], carry, keys[1:], strict=True):
            x, c = layers.recurrent_layer(p, c, x, dtype=cfg.dtype)
            x = layers.dropout(k, x, rate)
            new_carry.append(c)
        h_BTH = x.swapaxes(0, 1)
        return h_BTH.reshape(-1, h_BTH.shape[-1]), new_carry


def forward(params, cfg: ModelConfig, carry, tokens_BT, key=None):
    """Logits for every position of a window: tokens [B, T] int -> (logits [B, T, V], carry)."""
    h_NH, carry = hidden_states(params, cfg, carry, tokens_BT, key)
    logits_NV = layers.affine(h_NH, output_weight(params), params["out"]["b"], cfg.dtype)
    return logits_NV.reshape(*tokens_BT.shape, -1), carry


def token_losses(params, cfg: ModelConfig, carry, inputs_BT, targets_BT, key=None):
    """Cross-entropy of every target token: ([B, T], carry)."""
    h_NH, carry = hidden_states(params, cfg, carry, inputs_BT, key)
    ce_N = layers.affine_cross_entropy(h_NH, output_weight(params), params["out"]["b"],
                                       targets_BT.reshape(-1), cfg.dtype)
    return ce_N.reshape(targets_BT.shape), carry


def loss(params, cfg: ModelConfig, carry, inputs_BT, targets_BT, key=None):
    """Mean cross-entropy over the window's B·T target tokens, and the new carry.

    inputs, targets [B, T] int. Perplexity is exp of this mean.
    """
    ce_BT, carry = token_losses(params, cfg, carry, inputs_BT, targets_BT, key)
    return jnp.mean(ce_BT), carry
