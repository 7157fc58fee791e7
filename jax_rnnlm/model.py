"""The language model: embedding -> recurrent stack -> affine -> softmax with loss.

Params are a plain pytree in the seed's layout::

    {"embed": [V, D],
     "layers": [{"w_x": [D, G·H], "w_h": [H, G·H], "b": [G·H]}, ...],  # per cell: cells.py
     "out": {"w": [H, V], "b": [V]}}          # tied: {"b": [V]}, w = embed.T
                                              # adaptive softmax: see adaptive.py

Every function takes ``(params, cfg, carry, ...)`` with ``cfg`` a ModelConfig
(static under ``jax.jit``): the matmul precision comes from ``cfg.dtype``, and
the regularisers (dropout in its variants, weight drop, AR/TAR) apply exactly
when a PRNG ``key`` is given, so training passes a key and evaluation does not.
"""
import jax
import jax.numpy as jnp

from jax_rnnlm import adaptive, layers
from jax_rnnlm.cells import CELLS, init_cell, uniform
from jax_rnnlm.config import ModelConfig


def init_params(key, cfg: ModelConfig):
    """Fresh params for ``cfg`` (layout in the module docstring)."""
    k_embed, k_out, *k_layers = jax.random.split(key, 2 + cfg.num_layers)
    s = cfg.init_scale
    params = {
        "embed": uniform(k_embed, (cfg.vocab_size, cfg.embed_dim), s),
        "layers": [init_cell(k, cfg.cell, d_in, d_out, s) for k, d_in, d_out in
                   zip(k_layers, [cfg.embed_dim] + cfg.layer_dims[:-1], cfg.layer_dims)],
        "out": {"b": jnp.zeros((cfg.vocab_size,), jnp.float32)},
    }
    if cfg.softmax == "adaptive":
        params["out"] = adaptive.init(k_out, cfg.layer_dims[-1], cfg.vocab_size, cfg.cutoffs,
                                      cfg.div_value, s)
    elif not cfg.tie_weights:
        params["out"]["w"] = uniform(k_out, (cfg.layer_dims[-1], cfg.vocab_size), s)
    return params


def init_carry(cfg: ModelConfig, batch_size: int):
    """Zero recurrent state: a list with one carry per layer (h [B, H], or (h, c) for lstm;
    the last layer's H is ``cfg.layer_dims[-1]``)."""
    zero = CELLS[cfg.cell].zero_carry
    return [zero(batch_size, h, jnp.float32) for h in cfg.layer_dims]


def output_weight(params):
    """The affine weight [H, V]: its own, or the embedding transposed when tied."""
    out = params["out"]
    return out["w"] if "w" in out else params["embed"].T


def dropout_rates(cfg: ModelConfig):
    """Training dropout of the L + 1 non-recurrent connections: the embedding output,
    the L - 1 connections between layers, the last layer's output."""
    first = cfg.dropout if cfg.dropout_input is None else cfg.dropout_input
    between = cfg.dropout if cfg.dropout_hidden is None else cfg.dropout_hidden
    return [first] + [between] * (cfg.num_layers - 1) + [cfg.dropout]


def recurrent_stack(params, cfg: ModelConfig, carry, tokens_BT, key=None):
    """Embedding and recurrent stack, time-major: (last layer's output before its
    dropout [T, B, H], after it [T, B, H], carry). With a ``key`` (training) every
    regulariser of ``cfg`` applies: dropout (variational: one mask per stream and
    window), embedding dropout, weight drop on each layer's w_h."""
    n = len(params["layers"]) + 1
    train = key is not None
    rates = dropout_rates(cfg)
    keys = list(jax.random.split(key, n)) if train and any(rates) else [None] * n
    time_axis = 0 if cfg.variational else None
    with jax.named_scope("embedding"):  # scopes name the parts in profiles (bench --profile)
        x = layers.embedding(params["embed"], tokens_BT.T)
        if train:
            x = layers.drop_words(jax.random.fold_in(key, n), x, tokens_BT.T, cfg.vocab_size,
                                  cfg.dropout_embed)
        x = layers.dropout(keys[0], x, rates[0], time_axis)
    new_carry = []
    with jax.named_scope("recurrence"):
        for i, (p, c) in enumerate(zip(params["layers"], carry, strict=True)):
            if train and cfg.weight_drop:
                w_h = layers.dropout(jax.random.fold_in(key, n + 1 + i), p["w_h"],
                                     cfg.weight_drop)
                p = {**p, "w_h": w_h}
            raw, c = layers.recurrent_layer(cfg.cell, p, c, x, dtype=cfg.dtype,
                                            time_loop=cfg.time_loop)
            x = layers.dropout(keys[i + 1], raw, rates[i + 1], time_axis)
            new_carry.append(c)
    return raw, x, new_carry


def rows(h_TBH):
    """[T, B, H] -> [B·T, H] rows in b-major order (the order of targets_BT.reshape(-1))."""
    return h_TBH.swapaxes(0, 1).reshape(-1, h_TBH.shape[-1])


def hidden_states(params, cfg: ModelConfig, carry, tokens_BT, key=None):
    """Embedding and recurrent stack. Returns (h [B·T, H] rows in b-major order, carry)."""
    _, h_TBH, carry = recurrent_stack(params, cfg, carry, tokens_BT, key)
    return rows(h_TBH), carry


def activation_penalty(cfg: ModelConfig, raw_TBH, h_TBH):
    """AR + TAR (Merity et al. 2018): ar * mean(h²) of the dropped-out last-layer output,
    tar * mean((h_t - h_{t-1})²) of the output before dropout, within the window."""
    penalty = 0.0
    if cfg.ar:
        penalty = penalty + cfg.ar * jnp.mean(jnp.square(h_TBH))
    if cfg.tar and raw_TBH.shape[0] > 1:
        penalty = penalty + cfg.tar * jnp.mean(jnp.square(raw_TBH[1:] - raw_TBH[:-1]))
    return penalty


def output_log_probs(params, cfg: ModelConfig, h_NH):
    """The output layer's scores of every word [N, V]: logits of the affine layer, or
    the adaptive softmax's log probabilities (as good as logits to a softmax)."""
    if cfg.softmax == "adaptive":
        return adaptive.log_probs(params["out"], h_NH, cfg.cutoffs, cfg.vocab_size, cfg.dtype)
    return layers.affine(h_NH, output_weight(params), params["out"]["b"], cfg.dtype)


def output_cross_entropy(params, cfg: ModelConfig, h_NH, targets_N):
    """Cross-entropy of each row's target under the output layer: [N]."""
    if cfg.softmax == "adaptive":
        return adaptive.cross_entropy(params["out"], h_NH, targets_N, cfg.cutoffs,
                                      cfg.vocab_size, cfg.dtype)
    return layers.affine_cross_entropy(h_NH, output_weight(params), params["out"]["b"],
                                       targets_N, cfg.dtype)


def forward(params, cfg: ModelConfig, carry, tokens_BT, key=None):
    """Logits for every position of a window: tokens [B, T] int -> (logits [B, T, V], carry)."""
    h_NH, carry = hidden_states(params, cfg, carry, tokens_BT, key)
    return output_log_probs(params, cfg, h_NH).reshape(*tokens_BT.shape, -1), carry


def token_losses(params, cfg: ModelConfig, carry, inputs_BT, targets_BT, key=None):
    """Cross-entropy of every target token: ([B, T], carry)."""
    h_NH, carry = hidden_states(params, cfg, carry, inputs_BT, key)
    ce_N = output_cross_entropy(params, cfg, h_NH, targets_BT.reshape(-1))
    return ce_N.reshape(targets_BT.shape), carry


def loss(params, cfg: ModelConfig, carry, inputs_BT, targets_BT, key=None):
    """Mean cross-entropy over the window's B·T target tokens, and the new carry.

    inputs, targets [B, T] int. Perplexity is exp of this mean. In training (with
    a ``key``) the AR/TAR penalties of ``cfg`` are added to it.
    """
    raw_TBH, h_TBH, carry = recurrent_stack(params, cfg, carry, inputs_BT, key)
    ce_N = output_cross_entropy(params, cfg, rows(h_TBH), targets_BT.reshape(-1))
    objective = jnp.mean(ce_N)
    if key is not None and (cfg.ar or cfg.tar):
        objective = objective + activation_penalty(cfg, raw_TBH, h_TBH)
    return objective, carry
