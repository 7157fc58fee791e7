"""Full training states in a workdir's checkpoints/ and best/ (orbax), and reading a
trained model back.

A checkpoint step holds two items: ``state`` (the TrainState: params, optimizer
state with its learning rate, carry, PRNG key, step) and ``progress`` (JSON: the
host loop's ``train.LoopState``; the item keeps the name of earlier versions, so
their runs resume). Orbax writes each step to a temporary
directory and renames it when complete, and deletes old steps only after that,
so a kill at any moment leaves the previous good step in place.
"""
import asyncio
import contextlib
import dataclasses
import gc
import json
import logging
import re
import sys
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from jax_rnnlm import data, optim, step, workdir as wd
from jax_rnnlm.config import ModelConfig


class CheckpointError(wd.WorkdirError):
    """A checkpoint that cannot be written or read; the message says which and why."""


class Checkpoints:
    """The last ``keep`` states in checkpoints/ and the best-validation one in best/."""

    def __init__(self, workdir, keep=3):
        last, best = wd.checkpoint_dirs(workdir)
        self.last = ocp.CheckpointManager(last,
                                          options=ocp.CheckpointManagerOptions(max_to_keep=keep))
        self.best = ocp.CheckpointManager(best,
                                          options=ocp.CheckpointManagerOptions(max_to_keep=1))

    def save(self, state, loop: dict, *, best=False):
        """Write ``state`` and the JSON-ready ``loop`` under the state's step, and wait."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  progress=ocp.args.JsonSave(loop))
        step_ = int(state.step)
        try:
            for mngr in (self.last, self.best) if best else (self.last,):
                if step_ not in mngr.all_steps():
                    mngr.save(step_, args=args)
            self.wait()
        except OSError as e:
            raise CheckpointError(f"could not write the checkpoint of step {step_}: "
                                  f"{e.strerror or e}; the previous checkpoint "
                                  f"(step {self.last.latest_step()}) is intact") from None

    def wait(self):
        self.last.wait_until_finished()
        self.best.wait_until_finished()

    def latest_step(self):
        return self.last.latest_step()

    def restore(self, template, *, which="last", echo=print):
        """(state, loop dict) of the newest readable step, or None if there is none.

        A step that fails to restore (truncated, corrupted or missing files) is
        reported in one line, with what is wrong with it, and skipped in favour of the
        one before it. Nothing else of the failed read reaches the terminal (see
        ``_restore_attempt``); the log of the step that is used is shown as usual.
        """
        mngr = self.best if which == "best" else self.last
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                  progress=ocp.args.JsonRestore())
        steps = sorted(mngr.all_steps(), reverse=True)
        for i, s in enumerate(steps):
            try:
                with _restore_attempt():
                    restored = mngr.restore(s, args=args)
            except Exception as e:  # orbax raises many types for damaged files
                then = f"trying step {steps[i + 1]}" if i + 1 < len(steps) else "no step left"
                echo(f"checkpoint of step {s} in {mngr.directory} is unreadable "
                     f"({_why_unreadable(e, Path(mngr.directory), s, steps)}); {then}")
                continue
            return restored["state"], dict(restored["progress"])
        if steps:
            raise CheckpointError(f"{mngr.directory}: none of the checkpoints "
                                  f"{steps} could be read")
        return None

    def close(self):
        self.last.close()
        self.best.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# What a failed restore would print besides its exception, and how ``_restore_attempt``
# keeps it back, for the duration of one ``CheckpointManager.restore`` and no longer.
#
# Orbax runs a restore as asyncio tasks, one per array, on an event loop it makes for
# the purpose, and closes that loop as soon as the first read fails. The other reads go
# on in TensorStore's threads; each one, when done, calls back into the closed loop: an
# unraisable "RuntimeError: Event loop is closed" and its traceback on stderr, per
# array, as they finish after the restore has failed. Tasks that failed as well are
# collected with asyncio's "Task exception was never retrieved" and a traceback, at any
# moment of the run. Orbax also logs what it finds wrong (say, a metadata file that
# does not parse) through absl, i.e. the ``absl`` logger: WARNING:absl:... lines.
# (TensorStore's C++ log printed nothing with any damage tried: it reports by the
# exception, whose message holds its spec, hence ``_why_unreadable``.)
#
#   * The loops orbax makes during the attempt are ``_SettlingLoop``s: closed with tasks
#     still pending, they first let them finish and take their outcomes, so no callback
#     reaches a closed loop and no failure is left unretrieved; it is all over when
#     ``restore`` returns. Only how new loops are made changes (the policy's
#     ``new_event_loop`` of this one instance), not which loop a thread has, nor the
#     policy; after a failure a garbage collection finalises whatever the attempt left.
#   * The records of the ``_HELD_LOGGERS`` are held back, not printed, and the loggers'
#     handlers and propagation are put back afterwards. If the step is read, the records
#     are then handed to those loggers as usual, in order: nothing about the step that
#     is used is hidden. If it fails they are dropped, and ``restore`` says in one line
#     what is wrong with the step.
# ``sys.unraisablehook``, warnings, stderr and every other logger are left alone.
_HELD_LOGGERS = ("absl", "orbax", "asyncio")
_SETTLE_S = 120  # the longest the other reads of a failed restore are waited for


class _SettlingLoop(asyncio.SelectorEventLoop):
    """An event loop that finishes the tasks still pending when it is closed."""

    def close(self):
        pending = set() if self.is_running() or self.is_closed() else asyncio.all_tasks(self)
        if pending:
            self.run_until_complete(asyncio.wait(pending, timeout=_SETTLE_S))
            for task in pending:
                task.cancel()  # a no-op for the finished ones: gives up a read that hangs
            self.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        super().close()


class _HeldRecords(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


@contextlib.contextmanager
def _restore_attempt():
    """One restore: silent if it fails, shown as usual if it succeeds (see above)."""
    held = _HeldRecords()
    loggers = [logging.getLogger(name) for name in _HELD_LOGGERS]
    saved = [(lg.handlers, lg.propagate) for lg in loggers]
    policy = asyncio.get_event_loop_policy()
    shadowed = vars(policy).get("new_event_loop")  # None: the class's method
    for lg in loggers:
        lg.handlers, lg.propagate = [held], False
    policy.new_event_loop = _SettlingLoop
    try:
        yield
    except BaseException:
        gc.collect()  # the attempt's leftovers are finalised now, while their logs are held
        held.records.clear()
        raise
    finally:
        if shadowed is None:
            del policy.new_event_loop
        else:
            policy.new_event_loop = shadowed
        for lg, (handlers, propagate) in zip(loggers, saved):
            lg.handlers, lg.propagate = handlers, propagate
        for record in held.records:  # there are some only when the step was read
            logging.getLogger(record.name).handle(record)


# TensorStore's errors: '[CODE: ]Error opening ...: Error reading ... of local file
# "...": why [tensorstore_spec=...] ...'; the innermost file named is the culprit.
_TS_CODE = re.compile(r"([A-Z][A-Z_]+): ")
_TS_FILE = re.compile(r'local file "([^"]+)"')
_MISSING, _DAMAGED = "a file is missing", "a file is truncated or corrupted"
_TS_KINDS = {"NOT_FOUND": _MISSING, "DATA_LOSS": _DAMAGED, "OUT_OF_RANGE": _DAMAGED}


def _why_unreadable(e, root, step_, steps):
    """What is wrong with checkpoint ``step_`` of ``root``, in a few words: which file
    is missing, truncated or corrupted where that can be told, and the exception's
    type (with TensorStore's status code); where no file can be named, the first line
    of the exception's message instead."""
    step_dir = root / str(step_)
    message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    message = message.split(" [tensorstore_spec")[0].strip()
    files = _TS_FILE.findall(message)
    if files:  # TensorStore's: its status code, and the innermost file it names
        code = _TS_CODE.match(message)
        type_ = f"{type(e).__name__} {code[1]}" if code else type(e).__name__
        kind = _TS_KINDS.get(code and code[1]) or \
            (_DAMAGED if "decod" in message.lower() else None)
        path = None if files[-1].endswith("/") else files[-1]  # a directory: which file?
        what = type_
    else:
        type_ = type(e).__name__
        kind = _MISSING if isinstance(e, FileNotFoundError) else \
            _DAMAGED if isinstance(e, json.JSONDecodeError) else None
        path = getattr(e, "filename", None)
        first = message.splitlines()[0] if message else ""
        what = f"{type_}: {_shorten(first)}" if first else type_
    if path is None:  # the exception does not say which file: look for it
        kind, path = _damaged_file(step_dir, [root / str(s) for s in steps if s != step_]) \
            or (kind, None)
    if path is None:
        return f"{kind}; {what}" if kind else what
    return f"{kind or 'a file cannot be read'}: {_relative(path, step_dir)}; {type_}"


def _damaged_file(step_dir, others):
    """(what, path) for a file of ``step_dir`` that is missing (every other step has it;
    a missing directory is named as such) or is JSON cut short or corrupted, or None.
    Array data (in d/, files named by their hash) is not compared between steps."""
    def files(d):
        return {p.relative_to(d) for p in d.rglob("*") if p.is_file() and p.parent.name != "d"}
    try:
        if not step_dir.is_dir():
            return "the step's directory is missing", None
        mine, others = files(step_dir), [files(d) for d in others if d.is_dir()]
        for rel in sorted(set.intersection(*others) - mine) if others else ():
            top = next(step_dir.joinpath(*rel.parts[:n]) for n in range(1, len(rel.parts) + 1)
                       if not step_dir.joinpath(*rel.parts[:n]).exists())
            return ("a directory is missing" if top != step_dir / rel else _MISSING), top
        for rel in sorted(mine):
            with open(step_dir / rel, "rb") as f:
                if f.read(1) not in (b"", b"{", b"["):
                    continue  # not JSON
            try:
                json.loads((step_dir / rel).read_bytes())
            except ValueError:
                return _DAMAGED, step_dir / rel
    except OSError:
        pass
    return None


def _relative(path, step_dir):
    try:
        return str(Path(path).relative_to(step_dir))
    except ValueError:
        return str(path)


def _shorten(text, limit=120):
    """``text``, cut at a space with an ellipsis if it is longer than ``limit``."""
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " …"


def restore_state(workdir, template_state, which="last"):
    """The state of the newest (or best) checkpoint of a workdir."""
    with Checkpoints(workdir) as ckpt:
        found = ckpt.restore(template_state, which=which,
                             echo=lambda s: print(s, file=sys.stderr))
    if found is None:
        raise CheckpointError(f"{workdir}: no {which} checkpoint saved yet")
    return found[0]


@dataclasses.dataclass(frozen=True)
class Trained:
    """A trained model read back from its workdir."""
    model_cfg: ModelConfig
    level: str           # "word" or "char"
    source: str          # the training data: a corpus name or an absolute path
    vocab: data.Vocab
    params: dict
    step: int


def load_trained(workdir, which="last"):
    """The newest (or best-validation) params of a workdir, with what is needed to use them
    (NT-ASGD runs: the averaged params, once averaging has begun)."""
    model_cfg, cfg, data_cfg, vocab = wd.read_run_info(workdir)
    tx = optim.from_config(cfg)
    template = step.init_state(jax.random.key(cfg.seed), model_cfg, tx, cfg.batch_size, cfg.dni)
    state = restore_state(workdir, template, which=which)
    return Trained(model_cfg, data_cfg.level, data_cfg.data, vocab,
                   optim.eval_params(state.params, state.opt_state), int(state.step))
