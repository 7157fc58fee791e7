"""A small training loop for the sequence tasks (classifier, tagger, seq2seq).

Examples differ in length, so batches are drawn from length-sorted pools
(less padding, fewer distinct shapes to compile) and padded to a multiple of
``FitConfig.pad_multiple``. The step is one jitted pure function
``(params, opt_state, batch, key) -> (params, opt_state, loss)`` with Adam and
global-norm clipping from optax; losses reach the host once per epoch.
"""
import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax_rnnlm.config import field


@dataclasses.dataclass(frozen=True)
class FitConfig:
    epochs: int = field(default=10, help="passes over the training examples")
    batch_size: int = field(default=32, help="B, examples per step")
    lr: float = field(default=1e-3, help="Adam learning rate")
    lr_decay: float = field(default=1.0, help="lr factor per epoch (1: constant)")
    clip: float = field(default=5.0, help="clip the gradient to this global norm")
    pool: int = field(default=50, help="batches per length-sorted pool (1: no sorting)")
    seed: int = field(default=0, help="seed for batch order and dropout")

    def __post_init__(self):
        if min(self.epochs, self.batch_size, self.pool) < 1:
            raise ValueError("epochs, batch_size and pool must be >= 1")
        if not (self.lr > 0.0 and self.clip > 0.0 and 0.0 < self.lr_decay <= 1.0):
            raise ValueError("need lr > 0, clip > 0 and lr_decay in (0, 1]")


def batch_order(lengths, batch_size, rng, pool=50):
    """Index arrays of one epoch: shuffle, sort each pool of ``pool`` batches by length,
    cut into batches, shuffle the batches."""
    perm = rng.permutation(len(lengths))
    lengths = np.asarray(lengths)
    batches = []
    for i in range(0, len(perm), pool * batch_size):
        chunk = perm[i:i + pool * batch_size]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def eval_order(lengths, batch_size):
    """Deterministic length-sorted batches covering every example once."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def make_optimizer(cfg: FitConfig):
    opt = optax.inject_hyperparams(optax.adam)(learning_rate=cfg.lr)
    return optax.chain(optax.clip_by_global_norm(cfg.clip), opt)


def make_step(loss_fn, tx):
    """Jitted train step for ``loss_fn(params, batch, key) -> scalar``; donates params, state."""
    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, opt_state, batch, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch, key)
        with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes an int count into floats
            updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss
    return step


def _set_lr(opt_state, lr):
    clip_state, inner = opt_state
    return (clip_state, inner._replace(hyperparams=dict(
        inner.hyperparams, learning_rate=jnp.asarray(lr, jnp.float32))))


def fit(loss_fn, params, collate, lengths, cfg: FitConfig, *, evaluate=None, echo=print):
    """Train ``params``; returns (params, history: one dict per epoch).

    collate(idx) -> batch (a pytree of numpy arrays) for example indices;
    lengths[i] sorts example i into a pool; evaluate(params) -> dict of
    metrics, run after each epoch.
    """
    tx = make_optimizer(cfg)
    opt_state, step = tx.init(params), make_step(loss_fn, tx)
    rng, key = np.random.RandomState(cfg.seed), jax.random.key(cfg.seed)
    history, t0, n_steps = [], time.perf_counter(), 0
    for epoch in range(cfg.epochs):
        opt_state = _set_lr(opt_state, cfg.lr * cfg.lr_decay ** epoch)
        losses = []
        for idx in batch_order(lengths, cfg.batch_size, rng, cfg.pool):
            params, opt_state, loss = step(params, opt_state, collate(idx),
                                           jax.random.fold_in(key, n_steps))
            losses.append(loss)
            n_steps += 1
        record = {"epoch": epoch + 1, "train_loss": float(jnp.mean(jnp.stack(losses))),
                  "steps": n_steps}
        record.update(evaluate(params) if evaluate else {})
        record["wall_s"] = round(time.perf_counter() - t0, 1)
        history.append(record)
        echo(record)
    return params, history
