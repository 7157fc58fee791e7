"""A small training loop for the sequence tasks (classifier, tagger, seq2seq).

Examples differ in length, so batches are drawn from length-sorted pools (less
padding, fewer distinct shapes to compile) and padded by ``pad_batch``, which
also rejects empty sequences: under jit the models cannot check their lengths.
The step is one jitted pure function ``(params, opt_state, batch, key) ->
(params, opt_state, loss)`` with the project's optimizer (``optim.make_optimizer``:
global-norm clipping, then Adam); losses reach the host once per epoch.
"""
import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax_rnnlm.config import field
from jax_rnnlm.tokenizer import PAD_ID
from jax_rnnlm.seqtasks.encoder import check_nonempty
from jax_rnnlm.optim import make_optimizer, with_learning_rate


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


def pad_batch(seqs, *, pad_id=PAD_ID, multiple=1, width=None):
    """Int sequences -> (ids_BT int32, lengths_B int32), numpy, padded with ``pad_id``.

    T is the longest length (or ``width``), rounded up to ``multiple`` so that a
    jitted function sees few distinct shapes. Sequences of [T_b, F] arrays give
    ids [B, T, F]. An empty sequence is a ValueError naming its index.
    """
    if not len(seqs):
        raise ValueError("pad_batch needs at least one sequence")
    lengths = np.array([len(s) for s in seqs], np.int32)
    check_nonempty(lengths)
    t = -(-int(lengths.max() if width is None else width) // multiple) * multiple
    ids = np.full((len(seqs), t) + np.shape(seqs[0])[1:], pad_id, np.int32)
    for row, s in zip(ids, seqs):
        row[:len(s)] = s
    return ids, lengths


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


def make_step(loss_fn, tx):
    """Jitted train step for ``loss_fn(params, batch, key) -> scalar``; donates params, state."""
    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def train_step(params, opt_state, batch, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch, key)
        with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes an int count into floats
            updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss
    return train_step


def fit(loss_fn, params, collate, lengths, cfg: FitConfig, *, evaluate=None, echo=print):
    """Train ``params``; returns (params, history: one dict per epoch).

    loss_fn(params, batch, key) -> scalar, with dropout drawn from ``key``;
    collate(idx) -> batch (a pytree of numpy arrays) for example indices;
    lengths[i] sorts example i into a pool; evaluate(params) -> dict of
    metrics, run after each epoch.
    """
    tx = make_optimizer("adam", cfg.lr, cfg.clip)
    opt_state, train_step = tx.init(params), make_step(loss_fn, tx)
    rng, key = np.random.RandomState(cfg.seed), jax.random.key(cfg.seed)
    history, t0, n_steps = [], time.perf_counter(), 0
    for epoch in range(cfg.epochs):
        opt_state = with_learning_rate(opt_state, cfg.lr * cfg.lr_decay ** epoch)
        losses = []
        for idx in batch_order(lengths, cfg.batch_size, rng, cfg.pool):
            params, opt_state, loss = train_step(params, opt_state, collate(idx),
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
