"""Full training states in a workdir's checkpoints/ and best/ (orbax), and reading a
trained model back.

A checkpoint step holds two items: ``state`` (the TrainState: params, optimizer
state with its learning rate, carry, PRNG key, step) and ``progress`` (JSON: the
host loop's ``train.LoopState``; the item keeps the name of earlier versions, so
their runs resume). Orbax writes each step to a temporary
directory and renames it when complete, and deletes old steps only after that,
so a kill at any moment leaves the previous good step in place.
"""
import dataclasses
import logging
import sys
import traceback

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
        reported and skipped in favour of the one before it.
        """
        mngr = self.best if which == "best" else self.last
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                  progress=ocp.args.JsonRestore())
        steps = sorted(mngr.all_steps(), reverse=True)
        _ignore_closed_loop_callbacks()  # before the read: they can come while it fails
        for s in steps:
            try:
                restored = mngr.restore(s, args=args)
                return restored["state"], dict(restored["progress"])
            except Exception as e:  # orbax raises many types for damaged files
                echo(f"checkpoint of step {s} in {mngr.directory} is unreadable "
                     f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                     f"trying the one before it")
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


def _ignore_closed_loop_callbacks():
    """When one array of a checkpoint fails to read, orbax abandons the restore's event
    loop while TensorStore still completes the other reads. Their echoes then reach
    the terminal at any later moment: callbacks that hit the closed loop (an
    unraisable "Event loop is closed" per array) and read tasks whose failure nobody
    retrieved (asyncio's "Task exception was never retrieved", with a traceback).
    The failure itself is reported in one line by ``restore``. From the first restore
    on, this process drops exactly those two echoes; any other unraisable error or
    asyncio message still reaches its handler."""
    previous = sys.unraisablehook
    if getattr(previous, "drops_closed_loop_callbacks", False):
        return

    def hook(unraisable):
        if not (isinstance(unraisable.exc_value, RuntimeError)
                and str(unraisable.exc_value) == "Event loop is closed"):
            previous(unraisable)
    hook.drops_closed_loop_callbacks = True
    sys.unraisablehook = hook
    logging.getLogger("asyncio").addFilter(_abandoned_orbax_read)


def _abandoned_orbax_read(record):
    """False for asyncio's report of an orbax read task whose exception was never retrieved."""
    exc = record.exc_info[2] if record.exc_info else None
    return not (record.getMessage().startswith("Task exception was never retrieved")
                and exc is not None
                and any("orbax" in f.filename for f in traceback.extract_tb(exc)))


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
    source: str          # the training data
    vocab: data.Vocab
    params: dict
    step: int


def load_trained(workdir, which="last"):
    """The newest (or best-validation) params of a workdir, with what is needed to use them
    (NT-ASGD runs: the averaged params, once averaging has begun)."""
    model_cfg, cfg, data_info, vocab = wd.read_run_info(workdir)
    tx = optim.from_config(cfg)
    template = step.init_state(jax.random.key(cfg.seed), model_cfg, tx, cfg.batch_size, cfg.dni)
    state = restore_state(workdir, template, which=which)
    return Trained(model_cfg, data_info["level"], data_info["source"], vocab,
                   optim.eval_params(state.params, state.opt_state), int(state.step))
