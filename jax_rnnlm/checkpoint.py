"""What a run leaves in its workdir, and how to read it back.

    config.json    model, train and data settings of the run
    vocab.json     id -> token list of the train split
    checkpoints/   the last ``keep`` full training states (orbax CheckpointManager)
    best/          the state with the best validation perplexity so far
    metrics.jsonl  one JSON line per log point (written by train.fit)

A checkpoint step holds two items: ``state`` (the TrainState: params, optimizer
state with its learning rate, carry, PRNG key, step) and ``progress`` (JSON: epoch,
window within the epoch, best validation perplexity, plateau scale, skipped
batches, the loss sums of the current log interval). Orbax writes each step to a
temporary directory and renames it when complete, and deletes old steps only
after that, so a kill at any moment leaves the previous good step in place.
"""
import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from jax_rnnlm import data
from jax_rnnlm.model import ModelConfig

# TrainConfig fields that may change when a run resumes; every other one must match.
RESUMABLE_CHANGES = {"epochs", "max_steps", "log_every", "save_every", "keep",
                     "on_nonfinite", "eval_batch_size", "test_batch_size", "devices"}


class CheckpointError(RuntimeError):
    """A workdir or checkpoint that cannot be used; the message says which and why."""


def check_writable(workdir):
    """Create ``workdir`` if needed and prove a file can be written there."""
    workdir = Path(workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise CheckpointError(f"cannot write to workdir {workdir}: {e.strerror or e}; "
                              f"choose a writable --workdir") from None


def run_info(model_cfg, train_cfg, source, level, vocab):
    return {"model": dataclasses.asdict(model_cfg), "train": dataclasses.asdict(train_cfg),
            "data": {"source": str(source), "level": level, "vocab_size": len(vocab)}}


def write_run_info(workdir, info, vocab):
    workdir = Path(workdir)
    _atomic_write(workdir / "config.json", json.dumps(info, indent=2) + "\n")
    _atomic_write(workdir / "vocab.json", json.dumps(list(vocab.words)) + "\n")


def record_environment(workdir, **extra):
    """Append what this run ran on to environment.jsonl: versions, backend, devices, commit."""
    from importlib import metadata
    versions = {}
    for pkg in ("jax", "jaxlib", "optax", "flax", "orbax-checkpoint", "numpy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=10).stdout.strip() or None
    except OSError:
        commit = None
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "python": sys.version.split()[0], "versions": versions,
              "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
              "git_commit": commit, "argv": sys.argv, **extra}
    with (Path(workdir) / "environment.jsonl").open("a") as f:
        f.write(json.dumps(record) + "\n")


def _atomic_write(path, text):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def read_run_info(workdir):
    """(ModelConfig, train settings dict, data settings dict, Vocab) of a workdir."""
    workdir = Path(workdir)
    path = workdir / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{workdir}: no config.json; is this a jax-rnnlm workdir?")
    try:
        info = json.loads(path.read_text())
        vocab = data.Vocab(tuple(json.loads((workdir / "vocab.json").read_text())))
        return ModelConfig(**info["model"]), info["train"], info["data"], vocab
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{workdir}: config.json or vocab.json is unreadable ({e}); "
                              f"it was not written by this version of jax-rnnlm") from None


def differences(saved, new, vocab_saved, vocab_new):
    """Human-readable list of what differs between a saved run and a new one."""
    diffs = []
    for section in ("model", "train", "data"):
        for key in sorted(set(saved.get(section, {})) | set(new[section])):
            if section == "train" and key in RESUMABLE_CHANGES:
                continue
            a, b = saved.get(section, {}).get(key), new[section].get(key)
            if a != b:
                diffs.append(f"{section}.{key}: checkpoint has {a!r}, this run has {b!r}")
    if vocab_saved != vocab_new and len(vocab_saved) == len(vocab_new):
        first = next(i for i, (a, b) in enumerate(zip(vocab_saved.words, vocab_new.words))
                     if a != b)
        diffs.append(f"vocabulary: token {first} is {vocab_saved.words[first]!r} in the "
                     f"checkpoint and {vocab_new.words[first]!r} in this run's data")
    return diffs


def set_aside(workdir):
    """Move existing checkpoints out of the way (never deleted) for a fresh start."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    moved = []
    for name in ("checkpoints", "best", "metrics.jsonl"):
        path = Path(workdir) / name
        if path.exists():
            target = path.with_name(f"{name}.old-{stamp}")
            path.rename(target)
            moved.append(str(target))
    return moved


class Checkpoints:
    """The last ``keep`` states in checkpoints/ and the best-validation one in best/."""

    def __init__(self, workdir, keep=3):
        root = Path(workdir).absolute()
        self.last = ocp.CheckpointManager(root / "checkpoints",
                                          options=ocp.CheckpointManagerOptions(max_to_keep=keep))
        self.best = ocp.CheckpointManager(root / "best",
                                          options=ocp.CheckpointManagerOptions(max_to_keep=1))

    def save(self, state, progress: dict, *, best=False):
        """Write ``state`` and ``progress`` under the state's step (asynchronously)."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  progress=ocp.args.JsonSave(progress))
        step = int(state.step)
        try:
            for mngr in (self.last, self.best) if best else (self.last,):
                if step not in mngr.all_steps():
                    mngr.save(step, args=args)
            self.wait()
        except OSError as e:
            raise CheckpointError(f"could not write the checkpoint of step {step}: "
                                  f"{e.strerror or e}; the previous checkpoint "
                                  f"(step {self.last.latest_step()}) is intact") from None

    def wait(self):
        self.last.wait_until_finished()
        self.best.wait_until_finished()

    def latest_step(self):
        return self.last.latest_step()

    def restore(self, template, *, which="last", echo=print):
        """(state, progress) of the newest readable step, or None if there is none.

        A step that fails to restore (truncated, corrupted or missing files) is
        reported and skipped in favour of the one before it.
        """
        mngr = self.best if which == "best" else self.last
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                  progress=ocp.args.JsonRestore())
        steps = sorted(mngr.all_steps(), reverse=True)
        for step in steps:
            try:
                restored = mngr.restore(step, args=args)
                return restored["state"], dict(restored["progress"])
            except Exception as e:  # orbax raises many types for damaged files
                echo(f"checkpoint of step {step} in {mngr.directory} is unreadable "
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


def looks_foreign(workdir):
    """Why ``workdir`` holds something that is not a jax-rnnlm run, or None."""
    workdir = Path(workdir)
    ckpt = workdir / "checkpoints"
    if ckpt.exists() and not (workdir / "config.json").is_file():
        return (f"{ckpt} exists but {workdir} has no config.json: it was not written by "
                f"jax-rnnlm; use another --workdir")
    if ckpt.is_dir():
        strange = [p.name for p in ckpt.iterdir()
                   if not p.name.split(".")[0].isdigit() and not p.name.startswith(".")]
        if strange:
            return (f"{ckpt} holds entries that are not checkpoint steps ({strange[:3]}); "
                    f"it was not written by jax-rnnlm; use another --workdir")
    return None


def remove_stale_tmp(workdir):
    """Delete orbax temporary directories left by a save that was killed midway."""
    for sub in ("checkpoints", "best"):
        folder = Path(workdir) / sub
        if folder.is_dir():
            for p in folder.iterdir():
                if "orbax-checkpoint-tmp" in p.name:
                    shutil.rmtree(p, ignore_errors=True)


def restore_params(workdir, template_state, which="last"):
    """The state of the newest (or best) checkpoint of a workdir, for eval and generate."""
    with Checkpoints(workdir) as ckpt:
        found = ckpt.restore(template_state, which=which,
                             echo=lambda s: print(s, file=sys.stderr))
    if found is None:
        raise CheckpointError(f"{workdir}: no {which} checkpoint saved yet")
    return found[0]

