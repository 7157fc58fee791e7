"""Training by minibatch truncated BPTT: state, step, evaluation, schedule, loop.

One jitted pure function advances the state over K windows (an inner
``lax.scan``), so Python dispatch is paid once per K windows and the data
stays on the device. Within a window ``jax.grad`` back-propagates through the
time scan; the carry crosses the window boundary through ``stop_gradient``.
"""
import dataclasses
import functools
import json
import math
import time
from pathlib import Path

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax_rnnlm.config import field
from jax_rnnlm import checkpoint, data, model
from jax_rnnlm.model import ModelConfig


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    batch_size: int = field(
        default=20, help="B, number of parallel streams in a train step")
    bptt: int = field(default=35, help="T, time steps per truncated-BPTT window")
    optimizer: str = field(default="sgd", help="sgd or adam")
    lr: float = field(
        default=1.0, help="learning rate for the loss averaged over the B*T tokens of a window")
    clip: float = field(default=0.25, help="clip the gradient to this global norm")
    lr_decay: float = field(
        default=1.0, help="lr factor per epoch once --decay-after epochs are done (Zaremba: 0.5)")
    decay_after: int = field(
        default=0, help="epochs at full lr before --lr-decay starts (Zaremba small: 4)")
    plateau_factor: float = field(
        default=1.0, help="lr factor when val perplexity does not improve (0.25: divide by 4)")
    epochs: int = field(default=1, help="passes over the train split")
    max_steps: int = field(
        default=0, help="stop after this many train steps, then evaluate (0: no limit)")
    eval_batch_size: int = field(
        default=10, help="parallel streams when evaluating the valid split")
    test_batch_size: int = field(
        default=1, help="parallel streams when evaluating the test split")
    windows_per_call: int = field(
        default=10, help="truncated-BPTT windows per compiled call (fewer Python round trips)")
    log_every: int = field(default=100, help="train steps between lines of metrics.jsonl")
    seed: int = field(default=0, help="random seed for init, dropout and everything else")

    def __post_init__(self):
        for name in ("batch_size", "bptt", "epochs", "eval_batch_size", "test_batch_size",
                     "windows_per_call", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}: choose one of "
                             f"{sorted(OPTIMIZERS)}")
        if not (math.isfinite(self.lr) and 0.0 < self.lr <= 1e4):
            raise ValueError(f"lr must be in (0, 1e4], got {self.lr}")
        if not self.clip > 0.0:
            raise ValueError(f"clip must be > 0 (the max gradient norm), got {self.clip}")
        if not 0.0 < self.lr_decay <= 1.0 or not 0.0 < self.plateau_factor <= 1.0:
            raise ValueError("lr_decay and plateau_factor must be in (0, 1]")
        if self.max_steps < 0 or self.decay_after < 0:
            raise ValueError("max_steps and decay_after must be >= 0")


OPTIMIZERS = {"sgd": optax.sgd, "adam": optax.adam}


@flax.struct.dataclass
class TrainState:
    params: dict       # model params (see model.py)
    opt_state: tuple   # optax state; holds the current learning rate
    carry: list        # recurrent state [B, H] per layer, flowing from window to window
    key: jax.Array     # PRNG key for dropout
    step: jax.Array    # train steps done, int32 scalar


def make_optimizer(cfg: TrainConfig):
    """Global-norm clipping, then SGD or Adam with an injectable learning rate."""
    opt = optax.inject_hyperparams(OPTIMIZERS[cfg.optimizer])(learning_rate=cfg.lr)
    return optax.chain(optax.clip_by_global_norm(cfg.clip), opt)


def epoch_lr(cfg: TrainConfig, epoch, plateau_scale=1.0):
    """Learning rate of 0-based ``epoch``: Zaremba's staircase decay times the plateau scale."""
    schedule = optax.exponential_decay(cfg.lr, transition_steps=1, decay_rate=cfg.lr_decay,
                                       transition_begin=cfg.decay_after, staircase=True)
    return float(schedule(epoch + 1)) * plateau_scale


def plateau_update(best_val, val_ppl, scale, factor):
    """(best, scale) after an epoch: scale the lr by ``factor`` unless val ppl improved."""
    return min(best_val, val_ppl), scale if val_ppl < best_val else scale * factor


def with_lr(opt_state, lr):
    """The optax state with its injected learning rate set to ``lr``."""
    clip_state, inner = opt_state
    hp = dict(inner.hyperparams, learning_rate=jnp.asarray(lr, jnp.float32))
    return (clip_state, inner._replace(hyperparams=hp))


def current_lr(opt_state):
    return float(opt_state[1].hyperparams["learning_rate"])


def init_state(model_cfg: ModelConfig, cfg: TrainConfig, tx):
    k_init, k_drop = jax.random.split(jax.random.key(cfg.seed))
    params = model.init_params(k_init, model_cfg)
    return TrainState(params=params, opt_state=tx.init(params),
                      carry=model.init_carry(model_cfg, cfg.batch_size), key=k_drop,
                      step=jnp.zeros((), jnp.int32))


def window(streams_BL, start, bptt):
    """(inputs, targets) [B, T] of the window starting at ``start``, sliced on device."""
    xy = jax.lax.dynamic_slice_in_dim(streams_BL, start, bptt + 1, axis=1)
    return xy[:, :-1], xy[:, 1:]


def train_step(state: TrainState, inputs, targets, *, tx, dropout):
    """One truncated-BPTT step on a window: (state, inputs [B, T], targets [B, T]) -> (state, loss)."""
    key, k_drop = jax.random.split(state.key)

    def window_loss(params):
        return model.loss(params, state.carry, inputs, targets, key=k_drop, train=True,
                          dropout=dropout)

    (loss, carry), grads = jax.value_and_grad(window_loss, has_aux=True)(state.params)
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes an int count into floats
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
    state = state.replace(params=optax.apply_updates(state.params, updates),
                          opt_state=opt_state, carry=jax.lax.stop_gradient(carry),
                          key=key, step=state.step + 1)
    return state, loss


def make_train_windows(tx, dropout, bptt):
    """Jitted (state, streams [B, L], starts [K]) -> (state, losses [K]); state is donated."""

    def run(state, streams_BL, starts_K):
        def body(st, start):
            return train_step(st, *window(streams_BL, start, bptt), tx=tx, dropout=dropout)
        return jax.lax.scan(body, state, starts_K)

    return jax.jit(run, donate_argnums=0)


@functools.partial(jax.jit, static_argnames="bptt")
def _window_losses(params, carry, streams_BL, starts_K, bptt):
    def body(c, start):
        ce_BT, c = model.token_losses(params, c, *window(streams_BL, start, bptt))
        return c, jnp.sum(ce_BT)
    return jax.lax.scan(body, carry, starts_K)


def evaluate(params, model_cfg: ModelConfig, ids_N, *, batch_size=10, bptt=35,
             source="split"):
    """Perplexity over a whole split and the number of target tokens scored.

    The carry starts at zero and flows through the split. Every target of
    every stream is scored: the full windows in one compiled scan, then the
    shorter tail window. With batch_size 1 that is all N - 1 next tokens.
    """
    streams = data.batchify(ids_N, batch_size, source=source)
    carry = model.init_carry(model_cfg, batch_size)
    n_full = data.num_windows(streams, bptt, full_only=True)
    total = 0.0
    dev = jnp.asarray(streams)
    if n_full:
        carry, sums = _window_losses(params, carry, dev, jnp.arange(n_full) * bptt, bptt)
        total += float(np.sum(np.asarray(sums, np.float64)))
    tail = streams.shape[1] - 1 - n_full * bptt
    if tail:
        carry, sums = _window_losses(params, carry, dev, jnp.array([n_full * bptt]), tail)
        total += float(sums[0])
    count = batch_size * (streams.shape[1] - 1)
    return math.exp(total / count), count


class MetricsLog:
    """Appends JSON lines to ``metrics.jsonl`` in the workdir."""

    def __init__(self, workdir):
        self.path = Path(workdir) / "metrics.jsonl"

    def write(self, **record):
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def chunk_starts(n_windows, k, bptt):
    """Window start offsets of one epoch, grouped into jitted calls of at most K windows."""
    starts = np.arange(n_windows, dtype=np.int32) * bptt
    return [starts[i:i + k] for i in range(0, n_windows, k)]


def fit(model_cfg: ModelConfig, cfg: TrainConfig, corpus: data.Corpus, workdir,
        *, level="word", echo=print):
    """Train, validate each epoch, test at the end. Returns the summary dict."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    checkpoint.write_run_info(workdir, model_cfg, cfg, corpus, level)
    log = MetricsLog(workdir)
    tx = make_optimizer(cfg)
    state = init_state(model_cfg, cfg, tx)
    streams = jnp.asarray(data.train_streams(corpus.train, cfg.batch_size, cfg.bptt))
    n_windows = data.num_windows(streams, cfg.bptt, full_only=True)
    run_windows = make_train_windows(tx, model_cfg.dropout, cfg.bptt)
    tokens_per_step = cfg.batch_size * cfg.bptt
    t0 = time.perf_counter()
    train_time, train_tokens, val_ppl, best_val, scale = 0.0, 0, float("nan"), math.inf, 1.0
    for epoch in range(cfg.epochs):
        state = state.replace(opt_state=with_lr(state.opt_state, epoch_lr(cfg, epoch, scale)),
                              carry=model.init_carry(model_cfg, cfg.batch_size))
        losses, n_since, t_log = [], 0, time.perf_counter()
        for starts in chunk_starts(n_windows, cfg.windows_per_call, cfg.bptt):
            if cfg.max_steps:
                starts = starts[: cfg.max_steps - int(state.step)]
                if not len(starts):
                    break
            t_call = time.perf_counter()
            state, chunk_losses = run_windows(state, streams, jnp.asarray(starts))
            losses.append(chunk_losses)
            n_since += len(starts)
            step = int(state.step)  # waits for the call; its time counts as train time
            if step > len(starts):  # the first call compiles; leave it out of tokens/s
                train_time += time.perf_counter() - t_call
                train_tokens += len(starts) * tokens_per_step
            if step % cfg.log_every < len(starts) or step == cfg.max_steps:
                mean = float(jnp.mean(jnp.concatenate(losses)))
                rate = n_since * tokens_per_step / (time.perf_counter() - t_log)
                log.write(step=step, epoch=epoch + 1, train_loss=mean,
                          train_ppl=math.exp(mean), lr=current_lr(state.opt_state),
                          tokens_per_s=rate, wall_s=time.perf_counter() - t0)
                losses, n_since, t_log = [], 0, time.perf_counter()
        val_ppl, _ = evaluate(state.params, model_cfg, corpus.valid,
                              batch_size=cfg.eval_batch_size, bptt=cfg.bptt, source="valid split")
        best_val, scale = plateau_update(best_val, val_ppl, scale, cfg.plateau_factor)
        log.write(step=int(state.step), epoch=epoch + 1, val_ppl=val_ppl,
                  lr=current_lr(state.opt_state), wall_s=time.perf_counter() - t0)
        echo(f"epoch {epoch + 1}: step {int(state.step)}, val ppl {val_ppl:.2f}, "
             f"lr {current_lr(state.opt_state):.4g}, {time.perf_counter() - t0:.0f} s")
        checkpoint.save_state(workdir, state)
        if cfg.max_steps and int(state.step) >= cfg.max_steps:
            break
    test_ppl, _ = evaluate(state.params, model_cfg, corpus.test, batch_size=cfg.test_batch_size,
                           bptt=cfg.bptt, source="test split")
    summary = {"val_ppl": val_ppl, "test_ppl": test_ppl, "best_val_ppl": best_val,
               "steps": int(state.step), "tokens_per_s": train_tokens / train_time
               if train_time else float("nan"), "wall_s": time.perf_counter() - t0}
    log.write(**summary)
    return summary
