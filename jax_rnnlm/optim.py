"""Optimizers: optax chains with an injectable learning rate, and the iterate
averaging of NT-ASGD (Merity et al. 2018, "Regularizing and Optimizing LSTM
Language Models"): plain SGD until validation stops improving, then SGD whose
evaluation weights are the running mean of every iterate since the switch.

The average lives in the optimizer state, so it is checkpointed, placed and
restored with the rest of the train state, and a resumed run stays exact.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax_rnnlm.config import OPTIMIZERS

_OPTAX = {"sgd": optax.sgd, "adam": optax.adam, "ntasgd": optax.sgd}
assert set(_OPTAX) == set(OPTIMIZERS)


class AverageState(NamedTuple):
    inner: optax.OptState
    avg: optax.Params    # mean of the iterates since averaging began; the params until then
    count: jax.Array     # int32: iterates averaged after the first one
    on: jax.Array        # bool: averaging has begun


def averaged(inner: optax.GradientTransformation) -> optax.GradientTransformation:
    """``inner``, plus a running mean of the params it produces once ``on`` is set
    (``start_averaging``). Until then the mean is the newest params, so averaging
    begins from the iterate at the switch."""
    def init(params):
        avg = jax.tree.map(jnp.copy, params)  # own buffers: the train step donates both
        return AverageState(inner.init(params), avg, jnp.zeros((), jnp.int32),
                            jnp.zeros((), jnp.bool_))

    def update(updates, state, params):
        updates, inner_state = inner.update(updates, state.inner, params)
        new = optax.apply_updates(params, updates)
        count = state.count + state.on.astype(jnp.int32)
        weight = jnp.where(state.on, 1.0 / (count + 1).astype(jnp.float32), 1.0)
        avg = jax.tree.map(lambda a, p: a + weight * (p - a), state.avg, new)
        return updates, AverageState(inner_state, avg, count, state.on)

    return optax.GradientTransformation(init, update)


def make_optimizer(name="sgd", lr=1.0, clip=0.25, weight_decay=0.0):
    """Global-norm clipping, then L2 weight decay (added to the clipped gradient, as
    PyTorch's SGD does; only when > 0), then SGD or Adam with an injectable learning
    rate; "ntasgd" is SGD wrapped in ``averaged``.

    The one optimizer factory of the project (the sequence tasks use it too)."""
    opt = optax.inject_hyperparams(_OPTAX[name])(learning_rate=lr)
    decay = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
    tx = optax.chain(optax.clip_by_global_norm(clip), *decay, opt)
    return averaged(tx) if name == "ntasgd" else tx


def from_config(cfg):
    """``make_optimizer`` with the settings of a TrainConfig."""
    return make_optimizer(cfg.optimizer, cfg.lr, cfg.clip, cfg.weight_decay)


def learning_rate(opt_state):
    """The learning rate held in an optimizer state of ``make_optimizer``."""
    return float(optax.tree_utils.tree_get(opt_state, "learning_rate"))


def with_learning_rate(opt_state, lr):
    """The optimizer state with its learning rate set to ``lr``."""
    return optax.tree_utils.tree_set(opt_state, learning_rate=jnp.asarray(lr, jnp.float32))


def is_averaging(opt_state):
    """Whether an ``averaged`` optimizer state has begun averaging (False for others)."""
    return isinstance(opt_state, AverageState) and bool(np.all(np.asarray(opt_state.on)))


def start_averaging(opt_state):
    """The state of an ``averaged`` optimizer with averaging switched on."""
    return opt_state._replace(on=jnp.logical_or(opt_state.on, True))  # keeps its placement


def eval_params(params, opt_state):
    """The weights to evaluate and keep: the running mean once averaging has begun."""
    return opt_state.avg if is_averaging(opt_state) else params


def should_start_averaging(val_history, nonmono):
    """NT-ASGD's non-monotone trigger: the newest validation perplexity is worse than
    the best of the checks made more than ``nonmono`` checks before it.

    As in AWD-LSTM's main.py, where ``best_val_loss`` holds the earlier checks only:
    ``len(earlier) > nonmono and newest > min(earlier[:-nonmono])``."""
    *earlier, newest = val_history
    return len(earlier) > nonmono and newest > min(earlier[:-nonmono])
