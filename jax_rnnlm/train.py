"""Running a training job: the host loop around the pure step (``step.py``).

``fit`` places the state on one device or a mesh, resumes from the workdir if
it holds a checkpoint, then runs epochs of compiled calls of W windows each,
logging, checkpointing, validating and adjusting the learning rate between
calls. Where the loop stands is a small frozen ``LoopState``, passed in and
returned by each part and saved beside every checkpoint, so a resumed run
continues exactly where the saved one was.
"""
import contextlib
import dataclasses
import functools
import json
import math
import signal
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax_rnnlm import data, optim, parallel, step, workdir as wd
from jax_rnnlm.checkpoint import Checkpoints
from jax_rnnlm.config import DataConfig, ModelConfig, TrainConfig
from jax_rnnlm.progress import ProgressBar


class Interrupted(Exception):
    """Training stopped by SIGTERM/SIGINT after saving a checkpoint; running again resumes."""


class NonFiniteError(RuntimeError):
    """A non-finite loss or gradient with on_nonfinite='stop'; no checkpoint of it is written."""


@dataclasses.dataclass(frozen=True)
class LoopState:
    """Where the loop stands; saved as JSON beside each checkpoint."""
    epoch: int = 0                      # 0-based epoch in progress
    window: int = 0                     # windows of that epoch done
    best_val: float | None = None       # best validation perplexity so far
    lr_scale: float = 1.0               # product of the plateau factors applied so far
    skipped: int = 0                    # non-finite batches skipped (on_nonfinite="skip")
    loss_sum: float = 0.0               # train loss summed since the last metrics line
    loss_count: int = 0
    last_finite_loss: float | None = None
    sg_loss_sum: float = 0.0            # synthetic-gradient loss and cosine summed likewise
    sg_cos_sum: float = 0.0
    val_history: tuple = ()             # validation perplexity of every epoch (NT-ASGD's trigger)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class Job:
    """What the loop runs with: fixed for the whole run (its objects keep their own counts)."""
    model_cfg: ModelConfig
    cfg: TrainConfig
    corpus: data.Corpus
    streams: np.ndarray      # train streams [B, L] in host memory (a memory map)
    place: callable          # host columns [B, X] -> the device(s)
    run_windows: callable    # T -> (state, streams, starts [W]) -> (state, metrics of [W])
    evaluate: callable       # step.evaluate or parallel.sharded_evaluate
    names: list              # param_names, to say which gradient was not finite
    ckpt: Checkpoints
    log: object              # wd.MetricsLog, or wd.NoLog off the main process
    bar: ProgressBar
    clock: "Clock"
    echo: callable
    stop: list               # signals received; the loop saves and stops when non-empty


def epoch_lr(cfg: TrainConfig, epoch, lr_scale=1.0):
    """Learning rate of 0-based ``epoch``: Zaremba's staircase decay times the plateau scale."""
    schedule = optax.exponential_decay(cfg.lr, transition_steps=1, decay_rate=cfg.lr_decay,
                                       transition_begin=cfg.decay_after, staircase=True)
    return float(schedule(epoch + 1)) * lr_scale


def plateau_update(best_val, val_ppl, scale, factor):
    """(best, scale) after an epoch: scale the lr by ``factor`` unless val ppl improved."""
    return min(best_val, val_ppl), scale if val_ppl < best_val else scale * factor


def chunk_starts(first, n_windows, w, bptt):
    """Start offsets of windows first..n_windows-1, in compiled calls of at most W windows.

    Calls are aligned to multiples of W from the epoch start, so a run resumed
    at a call boundary groups its windows exactly as the uninterrupted run.
    """
    edges = [first, *range(first - first % w + w, n_windows, w), n_windows]
    starts = np.arange(n_windows, dtype=np.int32) * bptt
    return [starts[a:b] for a, b in zip(edges[:-1], edges[1:]) if a < b]


def window_lengths(bptt):
    """(lengths, probabilities) of --variable-bptt: AWD-LSTM draws T/2 with p 0.05, else
    N(T, 5); here a coarse grid of it (T-5, T, T+5 at 1/4, 1/2, 1/4) so the train step
    compiles for four lengths, not one per batch."""
    lengths = (max(1, bptt // 2), max(1, bptt - 5), bptt, bptt + 5)
    return lengths, (0.05, 0.95 / 4, 0.95 / 2, 0.95 / 4)


def longest_window(cfg: TrainConfig):
    """T of the longest train window: --bptt, or with --variable-bptt the longest drawn."""
    return max(window_lengths(cfg.bptt)[0]) if cfg.variable_bptt else cfg.bptt


def epoch_calls(first, n_targets, cfg: TrainConfig, epoch):
    """[(window starts [<= W], their length)] of the compiled calls for windows first..
    of 0-based ``epoch`` over ``n_targets`` = L - 1 targets per stream.

    Fixed T: ``chunk_starts``. Variable T: each call draws its length from a generator
    seeded by (seed, epoch), so a resumed run replays the same plan; the epoch ends
    when the drawn length no longer fits.
    """
    if not cfg.variable_bptt:
        n = n_targets // cfg.bptt
        return [(s, cfg.bptt) for s in chunk_starts(first, n, cfg.windows_per_call, cfg.bptt)]
    rng = np.random.default_rng([cfg.seed, epoch])
    lengths, probs = window_lengths(cfg.bptt)
    calls, t, done = [], 0, 0
    while True:
        T = int(rng.choice(lengths, p=probs))
        n = min(cfg.windows_per_call, (n_targets - t) // T)
        if n == 0:
            return calls
        if done + n > first:
            calls.append(((t + np.arange(n, dtype=np.int32) * T)[max(0, first - done):], T))
        t, done = t + n * T, done + n


@contextlib.contextmanager
def stop_requests():
    """Turn SIGTERM, SIGINT and SIGHUP into a list that the loop checks between compiled calls."""
    requested = []
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return
    # SIGHUP: a closed terminal or a dropped ssh session saves like SIGTERM does; under
    # nohup (SIGHUP ignored) it stays ignored, so the run goes on as the user asked
    caught = [signal.SIGTERM, signal.SIGINT]
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        caught.append(signal.SIGHUP)
    old = {sig: signal.signal(sig, lambda signum, frame: requested.append(signum))
           for sig in caught}
    try:
        yield requested
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


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
        """Tokens per second after the first call, or None before a second call."""
        return self.tokens / self.time if self.time else None

    def wall(self):
        return time.perf_counter() - self.t0


def place_run(model_cfg, cfg, corpus, tx):
    """(state, host streams [B, L], place, run_windows, evaluate) on one device or split
    over several. ``place`` copies the columns of one compiled call to the device(s),
    so the train split stays in host memory (memory-mapped, see ``idcache``).

    With more than one device (``cfg.devices``, 0 meaning all of them) the B
    streams, and the carry with them, are sharded over a mesh (parallel.py).
    """
    state = step.init_state(jax.random.key(cfg.seed), model_cfg, tx, cfg.batch_size, cfg.dni)
    longest = longest_window(cfg)
    streams = data.train_streams(corpus.train, cfg.batch_size, longest)
    n = cfg.devices or jax.device_count()
    if n == 1:
        return (state, streams, jnp.asarray, functools.cache(
            lambda T: step.jit_train_windows(model_cfg, tx, T, cfg.dni)), step.evaluate)
    state, place, run_windows = parallel.prepare(state, cfg.batch_size, model_cfg, tx, n, cfg.dni)
    return state, streams, place, run_windows, parallel.sharded_evaluate


def start_run(state, model_cfg, cfg, corpus, workdir, data_cfg, *, resume="auto", echo=print,
              main=True):
    """(state, loop, Checkpoints, resumed): ``state`` as given (fresh), or the workdir's
    newest checkpoint restored into its structure and device placement."""
    wd.claim(workdir)
    info = wd.run_info(model_cfg, cfg, data_cfg, corpus)
    loop, resumed = LoopState(), False
    ckpt = Checkpoints(workdir, keep=cfg.keep)
    if ckpt.latest_step() is not None:
        if resume == "refuse":
            raise wd.WorkdirError(
                f"{workdir} already holds checkpoints (newest: step {ckpt.latest_step()}); "
                f"use --resume auto to continue, --resume fresh to set them aside")
        if resume == "fresh":
            ckpt.close()
            if main:
                echo(f"starting fresh; moved aside: {', '.join(wd.set_aside(workdir))}")
            ckpt = Checkpoints(workdir, keep=cfg.keep)
        else:
            diffs = wd.differences(wd.read_saved_info(workdir), info,
                                   wd.read_run_info(workdir)[3], corpus.vocab)
            if diffs:
                raise wd.WorkdirError(
                    f"{workdir} holds a run that differs from this one, so it cannot be "
                    f"resumed:\n  " + "\n  ".join(diffs) +
                    "\nuse the run's settings, another --workdir, or --resume fresh")
            if main:
                wd.remove_stale_tmp(workdir)
            state, saved = ckpt.restore(state, echo=echo)
            saved["val_history"] = tuple(saved.get("val_history", ()))  # JSON gave a list
            loop, resumed = LoopState(**saved), True
            echo(f"resuming from step {int(state.step)} (epoch {loop.epoch + 1}, "
                 f"window {loop.window})")
    if main:
        wd.write_run_info(workdir, info, corpus.vocab)
        wd.record_environment(workdir, resumed_from=int(state.step))
    return state, loop, ckpt, resumed


def check_finite(finite_WP, losses_W, step0, loop, job):
    """The loop state after counting (or stopping on) windows whose loss or gradients
    were not finite."""
    bad = ~finite_WP.all(axis=1)
    if not bad.any():
        return loop.replace(last_finite_loss=float(losses_W[-1]))
    first = int(np.argmax(bad))
    if job.cfg.on_nonfinite == "skip":
        return loop.replace(skipped=loop.skipped + int(bad.sum()))
    culprits = [n for n, ok in zip(["loss"] + [f"grad of {n}" for n in job.names],
                                   finite_WP[first]) if not ok]
    last = float(losses_W[first - 1]) if first else loop.last_finite_loss
    raise NonFiniteError(f"non-finite values at step {step0 + first + 1}: "
                         f"{', '.join(culprits)}; last finite loss {last}. No checkpoint of "
                         f"this state was written; lower --lr or --clip, or pass "
                         f"--on-nonfinite skip to drop such batches")


def train_epoch(state, loop, job):
    """Run the rest of the current epoch (or until max_steps or a stop request)."""
    cfg = job.cfg
    lr = epoch_lr(cfg, loop.epoch, loop.lr_scale)
    for starts, T in epoch_calls(loop.window, job.streams.shape[1] - 1, cfg, loop.epoch):
        step0 = int(state.step)
        if cfg.max_steps:
            starts = starts[: cfg.max_steps - step0]
            if not len(starts):
                break
        if cfg.variable_bptt:  # AWD: a shorter window takes a proportionally smaller step
            state = state.replace(opt_state=optim.with_learning_rate(
                state.opt_state, lr * T / cfg.bptt))
        t_call = time.perf_counter()
        columns = job.place(job.streams[:, starts[0]:starts[-1] + T + 1])
        state, metrics = job.run_windows(T)(state, columns, jnp.asarray(starts - starts[0]))
        losses, finite = np.asarray(metrics["loss"], np.float64), np.asarray(metrics["finite"])
        job.clock.count(time.perf_counter() - t_call, len(starts) * cfg.batch_size * T)
        loop = check_finite(finite, losses, step0, loop, job)
        ok = finite.all(axis=1)
        loop = loop.replace(window=loop.window + len(starts),
                            loss_sum=loop.loss_sum + float(losses[ok].sum()),
                            loss_count=loop.loss_count + int(ok.sum()))
        if "sg_loss" in metrics:
            loop = loop.replace(
                sg_loss_sum=loop.sg_loss_sum + float(np.asarray(metrics["sg_loss"])[ok].sum()),
                sg_cos_sum=loop.sg_cos_sum + float(np.asarray(metrics["sg_cos"])[ok].sum()))
        n = step0 + len(starts)
        log_point = n // cfg.log_every > step0 // cfg.log_every or n == cfg.max_steps
        shown = loop.loss_sum / loop.loss_count if loop.loss_count else math.nan
        job.bar.update(n, log_point=log_point, epoch=loop.epoch + 1, loss=shown,
                       ppl=math.exp(shown), lr=optim.learning_rate(state.opt_state),
                       tok_s=job.clock.rate())  # the interval mean, as metrics.jsonl logs it
        if log_point:
            loop = write_train_line(job, state, loop)
        if cfg.save_every and n // cfg.save_every > step0 // cfg.save_every:
            job.ckpt.save(state, dataclasses.asdict(loop))
        if job.stop:
            job.ckpt.save(state, dataclasses.asdict(loop))
            raise Interrupted(f"interrupted at step {n}, checkpoint saved; resumable: "
                              f"run the same command again")
    if cfg.variable_bptt:  # the epoch's own lr for the epoch-end log and checkpoint
        state = state.replace(opt_state=optim.with_learning_rate(state.opt_state, lr))
    return state, loop


def write_train_line(job, state, loop):
    n = max(loop.loss_count, 1)
    mean = loop.loss_sum / n
    sg = ({"sg_loss": loop.sg_loss_sum / n, "sg_cos": loop.sg_cos_sum / n}
          if job.cfg.dni is not None else {})
    job.log.write(step=int(state.step), epoch=loop.epoch + 1, train_loss=mean,
                  train_ppl=math.exp(mean), lr=optim.learning_rate(state.opt_state),
                  tokens_per_s=job.clock.interval_rate(), skipped=loop.skipped,
                  wall_s=job.clock.wall(), **sg)
    return loop.replace(loss_sum=0.0, loss_count=0, sg_loss_sum=0.0, sg_cos_sum=0.0)


def begin_epoch(state, loop, cfg):
    """A fresh carry and this epoch's learning rate."""
    lr = epoch_lr(cfg, loop.epoch, loop.lr_scale)
    # zeros_like keeps the carry's placement (sharded over the batch axis)
    return state.replace(opt_state=optim.with_learning_rate(state.opt_state, lr),
                         carry=jax.tree.map(jnp.zeros_like, state.carry))


def end_epoch(state, loop, job):
    """Validate, apply the plateau rule and NT-ASGD's trigger, save (and keep as best
    if it improved). Returns (state, loop, val ppl)."""
    val_ppl = validate(state, job)
    best = loop.best_val if loop.best_val is not None else math.inf
    best_val, lr_scale = plateau_update(best, val_ppl, loop.lr_scale, job.cfg.plateau_factor)
    history = (*loop.val_history, val_ppl)
    if (job.cfg.optimizer == "ntasgd" and not optim.is_averaging(state.opt_state)
            and optim.should_start_averaging(history, job.cfg.nonmono)):
        state = state.replace(opt_state=optim.start_averaging(state.opt_state))
        job.echo(f"epoch {loop.epoch + 1}: val ppl no better than {job.cfg.nonmono} epochs "
                 f"ago; averaging the iterates from here on (NT-ASGD)")
    lr = optim.learning_rate(state.opt_state)
    job.log.write(step=int(state.step), epoch=loop.epoch + 1, val_ppl=val_ppl, lr=lr,
                  averaging=optim.is_averaging(state.opt_state), wall_s=job.clock.wall())
    job.echo(f"epoch {loop.epoch + 1}: step {int(state.step)}, val ppl {val_ppl:.2f}, "
             f"lr {lr:.4g}, {job.clock.wall():.0f} s")
    loop = loop.replace(epoch=loop.epoch + 1, window=0, best_val=best_val, lr_scale=lr_scale,
                        val_history=history)
    job.ckpt.save(state, dataclasses.asdict(loop), best=val_ppl < best)
    return state, loop, val_ppl


def validate(state, job, split="valid"):
    cfg = job.cfg
    batch = cfg.eval_batch_size if split == "valid" else cfg.test_batch_size
    params = optim.eval_params(state.params, state.opt_state)  # NT-ASGD: the average
    return job.evaluate(params, job.model_cfg, getattr(job.corpus, split),
                        batch_size=batch, bptt=cfg.bptt, source=f"{split} split")[0]


def reached_max_steps(state, cfg):
    return bool(cfg.max_steps) and int(state.step) >= cfg.max_steps


def check_data(cfg: TrainConfig, corpus: data.Corpus):
    """DataError, naming the setting to change, unless the corpus can train a model
    and evaluate it with these batch sizes: called before any work or any write."""
    if len(corpus.vocab) < 2:
        raise data.DataError(f"{corpus.source}: the vocabulary has {len(corpus.vocab)} "
                             f"type(s) ({', '.join(corpus.vocab.words[:3])}), a model needs "
                             f"at least 2; lower --min-count or raise --max-vocab")
    longest = longest_window(cfg)
    data.train_streams(corpus.train, cfg.batch_size, longest)
    for split, flag, batch in (("valid", "--eval-batch-size", cfg.eval_batch_size),
                               ("test", "--test-batch-size", cfg.test_batch_size)):
        if len(getattr(corpus, split)) // batch < 2:
            raise data.DataError(f"{split} split: {len(getattr(corpus, split))} tokens cannot "
                                 f"fill {flag} {batch} streams of at least 2 tokens; use a "
                                 f"smaller {flag}")


def fit(model_cfg: ModelConfig, cfg: TrainConfig, corpus: data.Corpus, workdir,
        *, data_cfg: DataConfig | None = None, resume="auto", echo=print, live=False,
        main=True):
    """Train (resuming from the workdir if it holds a checkpoint), validate each epoch,
    test at the end. Returns the summary dict (None where a figure does not exist).
    ``data_cfg``: the data settings to record (default: the corpus's source and level).

    ``echo`` receives the human-readable progress lines; ``live`` shows a progress
    bar instead (None: when stderr is a terminal). In a multi-process run only the
    ``main`` process writes logs and run files; all of them save checkpoints together.
    """
    echo = echo if main else (lambda s: None)
    check_data(cfg, corpus)
    if len(corpus.vocab) != model_cfg.vocab_size:
        raise ValueError(f"the model's vocab_size {model_cfg.vocab_size} is not the "
                         f"corpus's {len(corpus.vocab)}")
    data_cfg = data_cfg or DataConfig(data=corpus.source, level=corpus.level)
    wd.refuse_if_not_ours(workdir)
    tx = optim.from_config(cfg)
    state, streams, place, run_windows, evaluate = place_run(model_cfg, cfg, corpus, tx)
    state, loop, ckpt, resumed = start_run(state, model_cfg, cfg, corpus, workdir, data_cfg,
                                           resume=resume, echo=echo, main=main)
    echo(json.dumps(wd.run_info(model_cfg, cfg, data_cfg, corpus)))  # the settings in force
    planned = sum(sum(len(s) for s, _ in epoch_calls(0, streams.shape[1] - 1, cfg, e))
                  for e in range(cfg.epochs))
    total = min(planned, cfg.max_steps or planned)
    log = wd.MetricsLog(workdir, int(state.step) if resumed else None) if main else wd.NoLog()
    bar = ProgressBar(total, int(state.step), echo=echo, live=live and main)
    val_ppl = None
    with stop_requests() as stop, contextlib.closing(ckpt), contextlib.closing(bar):
        job = Job(model_cfg, cfg, corpus, streams, place, run_windows, evaluate,
                  step.param_names(state.params), ckpt, log, bar, Clock(), echo, stop)
        while loop.epoch < cfg.epochs and not reached_max_steps(state, cfg):
            if loop.window == 0:
                state = begin_epoch(state, loop, cfg)
            state, loop = train_epoch(state, loop, job)
            if not reached_max_steps(state, cfg):
                state, loop, val_ppl = end_epoch(state, loop, job)
        if reached_max_steps(state, cfg) or val_ppl is None:
            val_ppl = validate(state, job)
            ckpt.save(state, dataclasses.asdict(loop))
        best = min(loop.best_val if loop.best_val is not None else val_ppl, val_ppl)
        summary = {"val_ppl": val_ppl, "test_ppl": validate(state, job, "test"),
                   "best_val_ppl": best, "steps": int(state.step), "skipped": loop.skipped,
                   "tokens_per_s": job.clock.rate(), "wall_s": job.clock.wall()}
    log.write(**summary)
    return summary

