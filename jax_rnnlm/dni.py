"""Synthetic gradients for the carried state (DNI: Jaderberg et al. 2016,
"Decoupled Neural Interfaces using Synthetic Gradients", arXiv 1608.05343).

Truncated BPTT cuts, at every window boundary, the gradient that later windows'
losses send back through the carry. A small module ``SG(c; φ)`` predicts that
gradient from the carry itself, and the window's backward pass takes the
prediction in. Window k runs from carry c_k to c_{k+1} with loss L_k:

  objective   J_k = L_k + <stop_gradient(λ·SG(c_{k+1}) / BT), c_{k+1}>
              its parameter gradient is truncated BPTT's plus the predicted future
  target      g_k = dL_k/dc_k + (dc_{k+1}/dc_k)^T γ·SG(c_{k+1}) / BT
              (γ = λ by default: then g_k = dJ_k/dc_k, one backward pass for both)
  SG loss     mean over the B streams of |SG(c_k) - stop_gradient(BT·g_k)|^2

(L_k is a mean over the window's B·T tokens; SG works in units of their sum.)

By default the bootstrap uses the *scaled* prediction, so λ is also a discount on
how far into the future the synthetic gradient reaches (as γ in TD learning), and
one backward pass gives both gradients; ``discount`` sets γ apart from λ (the
core takes in λ·SG, the target weighs SG(c_{k+1}) by γ) at the cost of a second
backward pass. With λ = 1 and a perfect SG the objective's gradient is full
BPTT's. The last layer of ``SG`` starts at zero, so training starts as plain
truncated BPTT.

``SG`` maps a carry (a list with one h [B, H], or (h, c) for lstm, per layer)
to a pytree of the same structure: the leaves are concatenated to [B, S] and
split back. ``linear``: one affine [S, S]; ``mlp``: [S, M] -> relu -> [M, S].
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax_rnnlm import model
from jax_rnnlm.cells import uniform
from jax_rnnlm.config import DNIConfig

def flatten(carry):
    """A carry as one [B, S] array (S: the widths of its leaves, in order)."""
    return jnp.concatenate(jax.tree.leaves(carry), axis=-1)


def unflatten(flat_BS, like):
    """[B, S] back into the structure and widths of the carry ``like``."""
    leaves, treedef = jax.tree.flatten(like)
    cuts = np.cumsum([x.shape[-1] for x in leaves])[:-1].tolist()
    return jax.tree.unflatten(treedef, jnp.split(flat_BS, cuts, axis=-1))


def init_sg(key, dni_cfg: DNIConfig, carry_width):
    """SG params for a carry of total width S = ``carry_width``; the last layer is zero."""
    S = carry_width
    zeros = lambda *shape: jnp.zeros(shape, jnp.float32)
    if dni_cfg.kind == "linear":
        return {"out": {"w": zeros(S, S), "b": zeros(S)}}
    M = dni_cfg.hidden
    return {"hidden": {"w": uniform(key, (S, M), dni_cfg.init_scale), "b": zeros(M)},
            "out": {"w": zeros(M, S), "b": zeros(S)}}


def optimizer(dni_cfg: DNIConfig):
    """The SG module's own optimizer: Adam, its gradient clipped to norm 1."""
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(dni_cfg.lr))


def carry_width(cfg):
    """S of a language model's carry: H per layer, twice for lstm's (h, c)."""
    return sum(cfg.layer_dims) * (2 if cfg.cell == "lstm" else 1)


def predict(sg, carry):
    """The synthetic gradient for ``carry``: a pytree of the carry's structure."""
    x_BS = flatten(carry)
    if "hidden" in sg:
        x_BS = jax.nn.relu(x_BS @ sg["hidden"]["w"] + sg["hidden"]["b"][None, :])
    return unflatten(x_BS @ sg["out"]["w"] + sg["out"]["b"][None, :], carry)


def inner(a, b):
    """<a, b> summed over every leaf of two pytrees of the same structure."""
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b),
                                              strict=True))


def window_objective(params, cfg, carry, inputs_BT, targets_BT, delta_of, key=None):
    """J = L + <delta, c_out> for one window, and (L, c_out).

    ``delta_of(c_out)`` is the synthetic gradient (scaled) for the carry that
    leaves the window, a constant in J's gradient; zeros give truncated BPTT.
    """
    loss, carry_out = model.loss(params, cfg, carry, inputs_BT, targets_BT, key)
    delta = jax.lax.stop_gradient(delta_of(jax.lax.stop_gradient(carry_out)))
    return loss + inner(delta, carry_out), (loss, carry_out)


def sg_loss(sg, carry, target):
    """Mean over the B streams of the squared error of SG(carry) against ``target``."""
    err = flatten(predict(sg, carry)) - flatten(jax.lax.stop_gradient(target))
    return jnp.mean(jnp.sum(err * err, axis=-1))


def cosine(a, b):
    """Cosine between two pytrees seen as flat vectors (0 where either is zero)."""
    na, nb = jnp.sqrt(inner(a, a)), jnp.sqrt(inner(b, b))
    return jnp.where(na * nb > 0, inner(a, b) / jnp.maximum(na * nb, 1e-30), 0.0)


def window_grads(params, sg, dni_cfg: DNIConfig, cfg, carry, inputs_BT, targets_BT, key=None):
    """(loss, carry_out, param grads of J, target g_k = dJ_γ/dc_k) with λ·SG(c_{k+1}) / (B·T)
    as the synthetic gradient of the outgoing carry (SG works in units of the summed
    token losses, see ``dni_step_grads``). The target's J_γ weighs SG(c_{k+1}) by the
    discount γ (``dni_cfg.discount``, default λ): with γ = λ one backward pass gives both,
    otherwise the forward pass's pullback runs twice, once per weight."""
    per_token = 1.0 / inputs_BT.size
    discount = dni_cfg.scale if dni_cfg.discount is None else dni_cfg.discount

    def delta_of(carry_out):
        return jax.tree.map(lambda d: dni_cfg.scale * per_token * d, predict(sg, carry_out))

    if discount == dni_cfg.scale:
        (_, (loss, carry_out)), (grads, target) = jax.value_and_grad(
            window_objective, argnums=(0, 2), has_aux=True)(params, cfg, carry, inputs_BT,
                                                             targets_BT, delta_of, key)
        return loss, carry_out, grads, target
    (loss, carry_out), pullback = jax.vjp(
        lambda p, c: model.loss(p, cfg, c, inputs_BT, targets_BT, key), params, carry)
    sg_out = jax.lax.stop_gradient(predict(sg, jax.lax.stop_gradient(carry_out)))

    def weighted(w):  # the cotangent of (L, c_out) in J = L + <w·SG(c_out) / BT, c_out>
        return jnp.ones_like(loss), jax.tree.map(lambda d: (w * per_token * d).astype(d.dtype),
                                                 sg_out)
    grads, _ = pullback(weighted(dni_cfg.scale))
    _, target = pullback(weighted(discount))
    return loss, carry_out, grads, target


def dni_step_grads(params, sg, dni_cfg: DNIConfig, cfg, carry, inputs_BT, targets_BT, key=None):
    """One window with synthetic gradients: (loss, carry_out, param grads, SG loss, SG
    grads, cosine between SG(c_k) and its target g_k).

    One backward pass gives the params' gradient of J and the target g_k = dJ/dc_k;
    the SG is then regressed onto g_k at the carry the window started from. SG
    predicts in units of the window's *summed* token losses (g_k times B·T): the
    gradient of a mean over B·T tokens is ~1e-4 per element, far below the steps
    of an Adam-trained module, which then predicted 50-100x too large (measured on
    char-level PTB, B = 32, T = 8: cosine ~0 with its target).
    """
    loss, carry_out, grads, target = window_grads(params, sg, dni_cfg, cfg, carry, inputs_BT,
                                                  targets_BT, key)
    target = jax.tree.map(lambda t: t * inputs_BT.size, target)
    s_loss, s_grads = jax.value_and_grad(sg_loss)(sg, carry, target)
    return loss, carry_out, grads, s_loss, s_grads, cosine(predict(sg, carry), target)
