"""Training by minibatch truncated BPTT: state, step, evaluation, schedule, loop.

One jitted pure function advances the state over K windows (an inner
``lax.scan``), so Python dispatch is paid once per K windows and the data
stays on the device. Within a window ``jax.grad`` back-propagates through the
time scan; the carry crosses the window boundary through ``stop_gradient``.
"""
import contextlib
import dataclasses
import functools
import json
import math
import signal
import threading
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
from jax_rnnlm.progress import TrainProgress


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
    save_every: int = field(
        default=1000, help="train steps between checkpoints, besides each epoch end (0: epoch ends)")
    keep: int = field(default=3, help="how many of the newest checkpoints to keep (plus the best)")
    on_nonfinite: str = field(
        default="stop", help="on a non-finite loss or gradient: stop, or skip the batch")
    devices: int = field(
        default=0, help="devices to split the B streams over (0: all); B must be a multiple")
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
        if self.max_steps < 0 or self.decay_after < 0 or self.save_every < 0:
            raise ValueError("max_steps, decay_after and save_every must be >= 0")
        if self.devices < 0:
            raise ValueError(f"devices must be >= 0 (0: all devices), got {self.devices}")
        if self.keep < 1:
            raise ValueError(f"keep must be at least 1, got {self.keep}")
        if self.on_nonfinite not in ("stop", "skip"):
            raise ValueError(f"on_nonfinite must be 'stop' or 'skip', got {self.on_nonfinite!r}")


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


def train_step(state: TrainState, inputs, targets, *, tx, dropout, axis_name=None,
               dtype="float32"):
    """One truncated-BPTT step on a window: (state, inputs [B, T], targets [B, T]) -> (state, metrics).

    metrics: {"loss": mean CE of the window, "finite": bool [1 + n_params], whether
    the loss and each gradient tensor (in ``param_names`` order) are finite}. A
    window with anything non-finite changes neither params, optimizer state nor
    carry, so a bad batch can be skipped, or training stopped on a good state.

    Under ``jax.pmap``, ``axis_name`` names the device axis: each device holds
    B/n of the streams, draws its own dropout mask, and the loss and gradients
    are averaged over the devices before clipping (see parallel.py).
    ``dtype`` is the matmul precision (ModelConfig.dtype).
    """
    key, k_drop = jax.random.split(state.key)
    if axis_name is not None:
        k_drop = jax.random.fold_in(k_drop, jax.lax.axis_index(axis_name))

    def window_loss(params):
        return model.loss(params, state.carry, inputs, targets, key=k_drop, train=True,
                          dropout=dropout, dtype=dtype)

    (loss, carry), grads = jax.value_and_grad(window_loss, has_aux=True)(state.params)
    if axis_name is not None:  # equal shards, so the mean of means is the global mean
        loss, grads = jax.lax.pmean((loss, grads), axis_name)
    with jax.named_scope("optimizer"):
        finite = jnp.stack([jnp.isfinite(loss)] +
                           [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)])
        with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes an int count into floats
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
        new = (optax.apply_updates(state.params, updates), opt_state, jax.lax.stop_gradient(carry))
        old = (state.params, state.opt_state, state.carry)
        params, opt_state, carry = jax.tree.map(lambda n, o: jnp.where(jnp.all(finite), n, o),
                                                new, old)
    state = state.replace(params=params, opt_state=opt_state, carry=carry, key=key,
                          step=state.step + 1)
    return state, {"loss": loss, "finite": finite}


def param_names(params):
    """'/'-joined path of every params leaf, in jax.tree.leaves order (e.g. 'layers/0/w_h')."""
    return ["/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
            for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def scan_windows(tx, dropout, bptt, axis_name=None, dtype="float32"):
    """Unjitted (state, streams [B, L], starts [K]) -> (state, metrics of [K]): K train steps."""

    def run(state, streams_BL, starts_K):
        def body(st, start):
            return train_step(st, *window(streams_BL, start, bptt), tx=tx, dropout=dropout,
                              axis_name=axis_name, dtype=dtype)
        return jax.lax.scan(body, state, starts_K)

    return run


def make_train_windows(tx, dropout, bptt, dtype="float32"):
    """Jitted (state, streams [B, L], starts [K]) -> (state, metrics of [K]); state is donated.

    ``dtype``: matmul precision, ModelConfig.dtype."""
    return jax.jit(scan_windows(tx, dropout, bptt, dtype=dtype), donate_argnums=0)


@functools.partial(jax.jit, static_argnames=("bptt", "dtype"))
def _window_losses(params, carry, streams_BL, starts_K, bptt, dtype="float32"):
    def body(c, start):
        ce_BT, c = model.token_losses(params, c, *window(streams_BL, start, bptt),
                                      dtype=dtype)
        return c, jnp.sum(ce_BT)
    return jax.lax.scan(body, carry, starts_K)


def evaluate(params, model_cfg: ModelConfig, ids_N, *, batch_size=10, bptt=35,
             source="split", place=jax.device_put):
    """Perplexity over a whole split and the number of target tokens scored.

    The carry starts at zero and flows through the split. Every target of
    every stream is scored: the full windows in one compiled scan, then the
    shorter tail window. With batch_size 1 that is all N - 1 next tokens.
    ``place`` puts the streams [B, L] and the carry on the devices
    (``parallel.sharded_evaluate`` shards both over the batch axis).
    """
    streams = data.batchify(ids_N, batch_size, source=source)
    carry = place(model.init_carry(model_cfg, batch_size))
    n_full = data.num_windows(streams, bptt, full_only=True)
    total = 0.0
    dev = place(streams)
    if n_full:
        carry, sums = _window_losses(params, carry, dev, jnp.arange(n_full) * bptt, bptt,
                                     model_cfg.dtype)
        total += float(np.sum(np.asarray(sums, np.float64)))
    tail = streams.shape[1] - 1 - n_full * bptt
    if tail:
        carry, sums = _window_losses(params, carry, dev, jnp.array([n_full * bptt]), tail,
                                     model_cfg.dtype)
        total += float(sums[0])
    count = batch_size * (streams.shape[1] - 1)
    return math.exp(total / count), count


class Interrupted(Exception):
    """Training stopped by SIGTERM/SIGINT after saving a checkpoint; running again resumes."""


class NonFiniteError(RuntimeError):
    """A non-finite loss or gradient with on_nonfinite='stop'; no checkpoint of it is written."""


class MetricsLog:
    """Appends JSON lines to ``metrics.jsonl`` in the workdir.

    On resume, lines past the checkpoint's step are dropped first: the resumed
    run writes them again, identically.
    """

    def __init__(self, workdir, resume_step=None):
        self.path = Path(workdir) / "metrics.jsonl"
        if resume_step is not None and self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines(keepends=True)
                    if _keep_line(line, resume_step)]
            tmp = self.path.with_name("metrics.jsonl.tmp")
            tmp.write_text("".join(kept))
            tmp.replace(self.path)

    def write(self, **record):
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def _keep_line(line, step):
    try:
        record = json.loads(line)
    except ValueError:
        return False  # a line cut short by a kill
    return record.get("step", 0) <= step and "test_ppl" not in record


@contextlib.contextmanager
def stop_requests():
    """Turn SIGTERM and SIGINT into a flag that the loop checks between compiled calls."""
    requested = []
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return
    old = {sig: signal.signal(sig, lambda signum, frame: requested.append(signum))
           for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield requested
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def fresh_progress():
    """Where the loop stands, saved with each checkpoint (JSON)."""
    return {"epoch": 0, "window": 0, "best_val": None, "lr_scale": 1.0, "skipped": 0,
            "loss_sum": 0.0, "loss_count": 0, "last_finite_loss": None}


def start_run(state, model_cfg, cfg, corpus, workdir, level, *, resume="auto", echo=print,
              main=True):
    """(state, progress, Checkpoints): ``state`` as given (fresh), or the workdir's newest
    checkpoint restored into its structure and device placement."""
    checkpoint.check_writable(workdir)
    foreign = checkpoint.looks_foreign(workdir)
    if foreign:
        raise checkpoint.CheckpointError(foreign)
    info = checkpoint.run_info(model_cfg, cfg, corpus.source, level, corpus.vocab)
    progress = fresh_progress()
    ckpt = checkpoint.Checkpoints(workdir, keep=cfg.keep)
    if ckpt.latest_step() is not None:
        if resume == "refuse":
            raise checkpoint.CheckpointError(
                f"{workdir} already holds checkpoints (newest: step {ckpt.latest_step()}); "
                f"use --resume auto to continue, --resume fresh to set them aside")
        if resume == "fresh":
            ckpt.close()
            if main:
                echo(f"starting fresh; moved aside: {', '.join(checkpoint.set_aside(workdir))}")
            ckpt = checkpoint.Checkpoints(workdir, keep=cfg.keep)
        else:
            saved = json.loads((Path(workdir) / "config.json").read_text())
            diffs = checkpoint.differences(saved, info, checkpoint.read_run_info(workdir)[3],
                                           corpus.vocab)
            if diffs:
                raise checkpoint.CheckpointError(
                    f"{workdir} holds a run that differs from this one, so it cannot be "
                    f"resumed:\n  " + "\n  ".join(diffs) +
                    "\nuse the run's settings, another --workdir, or --resume fresh")
            if main:
                checkpoint.remove_stale_tmp(workdir)
            state, progress = ckpt.restore(state, echo=echo)
            echo(f"resuming from step {int(state.step)} (epoch {progress['epoch'] + 1}, "
                 f"window {progress['window']})")
    if main:
        checkpoint.write_run_info(workdir, info, corpus.vocab)
        checkpoint.record_environment(workdir, resumed_from=int(state.step))
    return state, progress, ckpt


def place_run(model_cfg, cfg, corpus, tx):
    """(state, streams [B, L], run_windows, evaluate) on one device or split over several.

    With more than one device (``cfg.devices``, 0 meaning all of them) the B
    streams, and the carry with them, are sharded over a mesh (parallel.py).
    """
    from jax_rnnlm import parallel  # parallel builds on this module
    state = init_state(model_cfg, cfg, tx)
    streams = data.train_streams(corpus.train, cfg.batch_size, cfg.bptt)
    n = cfg.devices or jax.device_count()
    if n == 1:
        return (state, jnp.asarray(streams),
                make_train_windows(tx, model_cfg.dropout, cfg.bptt, model_cfg.dtype), evaluate)
    state, streams, run_windows = parallel.prepare(state, streams, tx, model_cfg.dropout,
                                                   cfg.bptt, n, dtype=model_cfg.dtype)
    return state, streams, run_windows, parallel.sharded_evaluate


def chunk_starts(first, n_windows, k, bptt):
    """Start offsets of windows first..n_windows-1, in jitted calls of at most K windows.

    Calls are aligned to multiples of K from the epoch start, so a run resumed
    at a call boundary groups its windows exactly as the uninterrupted run.
    """
    edges = [first, *range(first - first % k + k, n_windows, k), n_windows]
    starts = np.arange(n_windows, dtype=np.int32) * bptt
    return [starts[a:b] for a, b in zip(edges[:-1], edges[1:]) if a < b]


def check_finite(finite_KP, losses_K, step0, names, progress, cfg):
    """Count or stop on windows whose loss or gradients were not finite."""
    bad = ~finite_KP.all(axis=1)
    if not bad.any():
        progress["last_finite_loss"] = float(losses_K[-1])
        return
    first = int(np.argmax(bad))
    if cfg.on_nonfinite == "skip":
        progress["skipped"] += int(bad.sum())
        return
    culprits = [n for n, ok in zip(["loss"] + [f"grad of {n}" for n in names],
                                   finite_KP[first]) if not ok]
    last = float(losses_K[first - 1]) if first else progress["last_finite_loss"]
    raise NonFiniteError(f"non-finite values at step {step0 + first + 1}: "
                         f"{', '.join(culprits)}; last finite loss {last}. No checkpoint of "
                         f"this state was written; lower --lr or --clip, or pass "
                         f"--on-nonfinite skip to drop such batches")


def train_epoch(state, progress, ctx):
    """Run the rest of the current epoch (or until max_steps or a stop request)."""
    cfg, streams, clock = ctx["cfg"], ctx["streams"], ctx["clock"]
    n_windows = data.num_windows(streams, cfg.bptt, full_only=True)
    for starts in chunk_starts(progress["window"], n_windows, cfg.windows_per_call, cfg.bptt):
        step0 = int(state.step)
        if cfg.max_steps:
            starts = starts[: cfg.max_steps - step0]
            if not len(starts):
                break
        t_call = time.perf_counter()
        state, metrics = ctx["run_windows"](state, streams, jnp.asarray(starts))
        losses, finite = np.asarray(metrics["loss"], np.float64), np.asarray(metrics["finite"])
        clock.count(time.perf_counter() - t_call, len(starts) * cfg.batch_size * cfg.bptt)
        check_finite(finite, losses, step0, ctx["names"], progress, cfg)
        ok = finite.all(axis=1)
        progress["window"] += len(starts)
        progress["loss_sum"] += float(losses[ok].sum())
        progress["loss_count"] += int(ok.sum())
        step = step0 + len(starts)
        log_point = step // cfg.log_every > step0 // cfg.log_every or step == cfg.max_steps
        ctx["progress"].update(step, log_point=log_point, epoch=progress["epoch"] + 1,
                               loss=float(losses.mean()), ppl=math.exp(losses.mean()),
                               lr=current_lr(state.opt_state), tok_s=clock.rate())
        if log_point:
            write_train_line(ctx["log"], state, progress, clock)
        if cfg.save_every and step // cfg.save_every > step0 // cfg.save_every:
            ctx["ckpt"].save(state, progress)
        if ctx["stop"]:
            ctx["ckpt"].save(state, progress)
            raise Interrupted(f"interrupted at step {step}, checkpoint saved; resumable: "
                              f"run the same command again")
    return state


def write_train_line(log, state, progress, clock):
    mean = progress["loss_sum"] / max(progress["loss_count"], 1)
    log.write(step=int(state.step), epoch=progress["epoch"] + 1, train_loss=mean,
              train_ppl=math.exp(mean), lr=current_lr(state.opt_state),
              tokens_per_s=clock.interval_rate(), skipped=progress["skipped"],
              wall_s=clock.wall())
    progress["loss_sum"], progress["loss_count"] = 0.0, 0


class Clock:
    """Wall time, and train tokens per second leaving out each process's first (compiling) call."""

    def __init__(self):
        self.t0 = self.t_log = time.perf_counter()
        self.calls, self.time, self.tokens, self.log_tokens = 0, 0.0, 0, 0

    def count(self, seconds, tokens):
        self.calls += 1
        self.log_tokens += tokens
        if self.calls > 1:
            self.time += seconds
            self.tokens += tokens

    def interval_rate(self):
        now = time.perf_counter()
        rate = self.log_tokens / (now - self.t_log)
        self.t_log, self.log_tokens = now, 0
        return rate

    def rate(self):
        return self.tokens / self.time if self.time else float("nan")

    def wall(self):
        return time.perf_counter() - self.t0


def end_epoch(state, progress, ctx):
    """Validate, apply the plateau rule, save (and keep as best if it improved)."""
    val_ppl = validate(state, ctx)
    best = progress["best_val"] if progress["best_val"] is not None else math.inf
    progress["best_val"], progress["lr_scale"] = plateau_update(
        best, val_ppl, progress["lr_scale"], ctx["cfg"].plateau_factor)
    ctx["log"].write(step=int(state.step), epoch=progress["epoch"] + 1, val_ppl=val_ppl,
                     lr=current_lr(state.opt_state), wall_s=ctx["clock"].wall())
    ctx["echo"](f"epoch {progress['epoch'] + 1}: step {int(state.step)}, val ppl "
                f"{val_ppl:.2f}, lr {current_lr(state.opt_state):.4g}, "
                f"{ctx['clock'].wall():.0f} s")
    progress["epoch"], progress["window"] = progress["epoch"] + 1, 0
    ctx["ckpt"].save(state, progress, best=val_ppl < best)
    return val_ppl


def validate(state, ctx, split="valid"):
    cfg = ctx["cfg"]
    batch = cfg.eval_batch_size if split == "valid" else cfg.test_batch_size
    return ctx["evaluate"](state.params, ctx["model_cfg"], getattr(ctx["corpus"], split),
                           batch_size=batch, bptt=cfg.bptt, source=f"{split} split")[0]


def fit(model_cfg: ModelConfig, cfg: TrainConfig, corpus: data.Corpus, workdir,
        *, level="word", resume="auto", echo=print, live=False, main=True):
    """Train (resuming from the workdir if it holds a checkpoint), validate each epoch,
    test at the end. Returns the summary dict.

    ``echo`` receives the human-readable progress lines; ``live`` shows a progress
    bar instead (None: when stderr is a terminal). In a multi-process run only the
    ``main`` process writes logs and run files; all of them save checkpoints together.
    """
    echo = echo if main else (lambda s: None)
    tx = make_optimizer(cfg)
    state, streams, run_windows, evaluate_fn = place_run(model_cfg, cfg, corpus, tx)
    state, progress, ckpt = start_run(state, model_cfg, cfg, corpus, workdir, level,
                                      resume=resume, echo=echo, main=main)
    resumed = int(state.step) if progress != fresh_progress() else None
    n_windows = data.num_windows(streams, cfg.bptt, full_only=True)
    total = min(cfg.epochs * n_windows, cfg.max_steps or cfg.epochs * n_windows)
    ctx = {"cfg": cfg, "model_cfg": model_cfg, "corpus": corpus, "streams": streams,
           "run_windows": run_windows, "evaluate": evaluate_fn,
           "names": param_names(state.params), "ckpt": ckpt, "clock": Clock(), "echo": echo,
           "log": MetricsLog(workdir, resumed) if main else NoLog(),
           "progress": TrainProgress(total, int(state.step), echo=echo, live=live and main)}
    val_ppl = float("nan")
    try:
        with stop_requests() as ctx["stop"]:
            while progress["epoch"] < cfg.epochs and not _reached(state, cfg):
                if progress["window"] == 0:  # epoch start: fresh carry, this epoch's lr
                    lr = epoch_lr(cfg, progress["epoch"], progress["lr_scale"])
                    # zeros_like keeps the carry's placement (sharded over the batch axis)
                    state = state.replace(opt_state=with_lr(state.opt_state, lr),
                                          carry=jax.tree.map(jnp.zeros_like, state.carry))
                state = train_epoch(state, progress, ctx)
                if not _reached(state, cfg):
                    val_ppl = end_epoch(state, progress, ctx)
            if _reached(state, cfg) or val_ppl != val_ppl:
                val_ppl = validate(state, ctx)
                ckpt.save(state, progress)
    finally:
        ckpt.close()
        ctx["progress"].close()
    best = progress["best_val"] if progress["best_val"] is not None else val_ppl
    summary = {"val_ppl": val_ppl, "test_ppl": validate(state, ctx, "test"),
               "best_val_ppl": min(best, val_ppl), "steps": int(state.step),
               "skipped": progress["skipped"], "tokens_per_s": ctx["clock"].rate(),
               "wall_s": ctx["clock"].wall()}
    ctx["log"].write(**summary)
    return summary


class NoLog:
    """The metrics log of a process other than the main one."""

    def write(self, **record):
        pass


def _reached(state, cfg):
    return bool(cfg.max_steps) and int(state.step) >= cfg.max_steps


@dataclasses.dataclass(frozen=True)
class Trained:
    """A trained model read back from its workdir."""
    model_cfg: ModelConfig
    data_info: dict      # source and level of the training data
    vocab: data.Vocab
    params: dict
    step: int


def load_trained(workdir, which="last"):
    """The newest (or best-validation) params of a workdir, with what is needed to use them."""
    model_cfg, train_info, data_info, vocab = checkpoint.read_run_info(workdir)
    cfg = TrainConfig(**train_info)
    state = checkpoint.restore_params(workdir, init_state(model_cfg, cfg, make_optimizer(cfg)),
                                      which=which)
    return Trained(model_cfg, data_info, vocab, state.params, int(state.step))
