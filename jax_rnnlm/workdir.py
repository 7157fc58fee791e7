"""A run directory ("workdir") and every file in it: the one place that knows the layout.

    .jax-rnnlm-run     marks the directory as a jax-rnnlm workdir (written first)
    config.json        model, train and data settings of the run
    vocab.json         id -> token list of the train split
    environment.jsonl  one line per start: versions, backend, devices, commit, argv
    metrics.jsonl      one JSON line per log point (``MetricsLog``)
    checkpoints/       the last ``--keep`` full training states (orbax, checkpoint.py)
    best/              the state with the best validation perplexity so far
"""
import dataclasses
import json
import math
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import jax

from jax_rnnlm import corpora
from jax_rnnlm.config import DataConfig, ModelConfig, TrainConfig
from jax_rnnlm.settings import resumable_fields
from jax_rnnlm.vocab import Vocab

CONFIG, VOCAB, ENVIRONMENT, METRICS = ("config.json", "vocab.json", "environment.jsonl",
                                       "metrics.jsonl")
MARKER = ".jax-rnnlm-run"
CHECKPOINTS, BEST = "checkpoints", "best"


class WorkdirError(RuntimeError):
    """A workdir that cannot be used; the message says which and why."""


def checkpoint_dirs(workdir):
    """(checkpoints/, best/) of a workdir, as absolute paths (orbax wants them so)."""
    root = Path(workdir).absolute()
    return root / CHECKPOINTS, root / BEST


def why_not_ours(workdir):
    """Why ``workdir`` must not be written by a train run, or None: it is a file, or a
    non-empty directory that is no jax-rnnlm workdir. Reads only."""
    workdir = Path(workdir)
    if not workdir.exists():
        return None
    if not workdir.is_dir():
        return f"{workdir} is a file, not a directory; choose another --workdir"
    entries = sorted(p.name for p in workdir.iterdir())
    if not entries or MARKER in entries or _legacy_run(workdir):
        return _strange_checkpoints(workdir)
    shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
    return (f"{workdir} is not a jax-rnnlm workdir: it holds {shown} and no {MARKER}; "
            f"nothing was written there; choose a new or empty --workdir")


def _legacy_run(workdir):
    """A run of a version before the marker: config.json of this program's layout."""
    try:
        info = json.loads((workdir / CONFIG).read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(info, dict) and {"model", "train", "data"} <= set(info)
            and (workdir / VOCAB).is_file())


def _strange_checkpoints(workdir):
    ckpt = workdir / CHECKPOINTS
    if ckpt.is_dir():
        strange = [p.name for p in ckpt.iterdir()
                   if not p.name.split(".")[0].isdigit() and not p.name.startswith(".")]
        if strange:
            return (f"{ckpt} holds entries that are not checkpoint steps ({strange[:3]}); "
                    f"it was not written by jax-rnnlm; use another --workdir")
    return None


def refuse_if_not_ours(workdir):
    """WorkdirError (saying why) if ``workdir`` must not be written by a train run."""
    why = why_not_ours(workdir)
    if why:
        raise WorkdirError(why)


def claim(workdir):
    """Make ``workdir`` this program's: refuse anyone else's (unchanged), create it if
    needed, and write the marker (which also proves the directory is writable)."""
    refuse_if_not_ours(workdir)
    workdir = Path(workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        if not (workdir / MARKER).is_file():
            _atomic_write(workdir / MARKER, json.dumps({"program": "jax-rnnlm"}) + "\n")
    except OSError as e:
        raise WorkdirError(f"cannot write to workdir {workdir}: {e.strerror or e}; "
                           f"choose a writable --workdir") from None


def run_info(model_cfg, train_cfg, data_cfg, corpus):
    """The content of config.json: the settings, and what identifies the data (its
    files' SHA-256, whatever path they were reached by)."""
    return {"model": dataclasses.asdict(model_cfg), "train": dataclasses.asdict(train_cfg),
            "data": {**dataclasses.asdict(data_cfg), "data": corpus.source,
                     "level": corpus.level, "vocab_size": len(corpus.vocab),
                     "identity": corpus.identity}}


def write_run_info(workdir, info, vocab):
    workdir = Path(workdir)
    _atomic_write(workdir / CONFIG, json.dumps(info, indent=2) + "\n")
    _atomic_write(workdir / VOCAB, json.dumps(list(vocab.words)) + "\n")


def read_run_info(workdir):
    """(ModelConfig, TrainConfig, DataConfig, Vocab) of a workdir."""
    workdir = Path(workdir)
    path = workdir / CONFIG
    if not path.is_file():
        raise WorkdirError(f"{workdir}: no {CONFIG}; is this a jax-rnnlm workdir?")
    try:
        info = json.loads(path.read_text())
        vocab = Vocab(tuple(json.loads((workdir / VOCAB).read_text())))
        return (ModelConfig(**info["model"]), TrainConfig(**info["train"]),
                data_config(info["data"]), vocab)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise WorkdirError(f"{workdir}: {CONFIG} or {VOCAB} is unreadable ({e}); "
                           f"it was not written by this version of jax-rnnlm") from None


def data_config(section):
    """The DataConfig of config.json's data section. Runs of earlier versions saved
    only the path as given ("source"): a named corpus's folder is read as its name."""
    fields = {f.name for f in dataclasses.fields(DataConfig)}
    values = {k: v for k, v in section.items() if k in fields}
    if "data" not in values:
        source = section["source"]
        name = Path(source).name if Path(source).is_dir() or not Path(source).exists() \
            else None
        values["data"] = name if name in corpora.NAMES else str(Path(source).absolute())
    return DataConfig(**values)


def read_saved_info(workdir):
    return json.loads((Path(workdir) / CONFIG).read_text())


def differences(saved, new, vocab_saved, vocab_new):
    """Human-readable list of what differs between a saved run and a new one.

    Fields declared ``resumable`` may differ; a setting missing from an older
    config.json counts as its default. The data are compared by content (their
    SHA-256), not by the path that reached them."""
    defaults = {"model": _defaults(ModelConfig), "train": _defaults(TrainConfig),
                "data": _defaults(DataConfig)}
    skip = {"model": resumable_fields(ModelConfig), "train": resumable_fields(TrainConfig),
            "data": resumable_fields(DataConfig) | {"data", "source", "identity"}}
    diffs = []
    for section in ("model", "train", "data"):
        old = {**defaults[section], **saved.get(section, {})}
        for key in sorted(set(old) | set(new[section])):
            if key in skip.get(section, ()):
                continue
            a, b = old.get(key), new[section].get(key)
            if json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):  # () == []
                diffs.append(f"{section}.{key}: checkpoint has {a!r}, this run has {b!r}")
    old_id, new_id = saved["data"].get("identity"), new["data"]["identity"]
    if old_id is not None and old_id != new_id:
        diffs.append(f"data: the checkpoint's text ({saved['data'].get('data')}, SHA-256 "
                     f"{_short(old_id)}) is not this run's ({new['data']['data']}, "
                     f"{_short(new_id)})")
    if vocab_saved != vocab_new and len(vocab_saved) == len(vocab_new):
        first = next(i for i, (a, b) in enumerate(zip(vocab_saved.words, vocab_new.words))
                     if a != b)
        diffs.append(f"vocabulary: token {first} is {vocab_saved.words[first]!r} in the "
                     f"checkpoint and {vocab_new.words[first]!r} in this run's data")
    return diffs


def _short(identity):
    return ", ".join(f"{k} {v[:12]}" for k, v in sorted(identity.items()))


def _defaults(cls):
    return {f.name: f.default for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING}


def set_aside(workdir):
    """Move existing checkpoints and metrics out of the way (never deleted) for a fresh start."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    moved = []
    for name in (CHECKPOINTS, BEST, METRICS):
        path = Path(workdir) / name
        if path.exists():
            target = path.with_name(f"{name}.old-{stamp}")
            path.rename(target)
            moved.append(str(target))
    return moved


def remove_stale_tmp(workdir):
    """Delete orbax temporary directories left by a save that was killed midway."""
    for folder in checkpoint_dirs(workdir):
        if folder.is_dir():
            for p in folder.iterdir():
                if "orbax-checkpoint-tmp" in p.name:
                    shutil.rmtree(p, ignore_errors=True)


def record_environment(workdir, **extra):
    """Append what this run ran on to environment.jsonl: versions, backend, devices, commit."""
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
    with (Path(workdir) / ENVIRONMENT).open("a") as f:
        f.write(json_line(record))


def json_line(record):
    """One line of strict JSON. A non-finite float (no perplexity yet, a diverged
    model) is written as null, and ``null_reasons`` says what it was."""
    reasons = {k: f"not finite ({v})" for k, v in record.items()
               if isinstance(v, float) and not math.isfinite(v)}
    clean = {k: (None if k in reasons else v) for k, v in record.items()}
    if reasons:
        clean["null_reasons"] = reasons
    return json.dumps(clean, allow_nan=False) + "\n"


class MetricsLog:
    """Appends JSON lines to metrics.jsonl.

    On resume, lines past the checkpoint's step are dropped first: the resumed
    run writes them again, identically.
    """

    def __init__(self, workdir, resume_step=None):
        self.path = Path(workdir) / METRICS
        if resume_step is not None and self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines(keepends=True)
                    if _keep_line(line, resume_step)]
            _atomic_write(self.path, "".join(kept))

    def write(self, **record):
        with self.path.open("a") as f:
            f.write(json_line(record))


class NoLog:
    """The metrics log of a process other than the main one: writes nothing."""

    def write(self, **record):
        pass


def _keep_line(line, step):
    try:
        record = json.loads(line)
    except ValueError:
        return False  # a line cut short by a kill
    return record.get("step", 0) <= step and "test_ppl" not in record


def read_metrics(workdir):
    """The records of metrics.jsonl, in order."""
    path = Path(workdir) / METRICS
    if not path.is_file():
        raise WorkdirError(f"{workdir}: no {METRICS}; is this a jax-rnnlm workdir?")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _atomic_write(path, text):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
