"""Full-state checkpoints: exact resume after kills, signals, damaged checkpoints,
mismatched runs, non-finite values, and the errors for bad workdirs."""
import asyncio
import dataclasses
import errno
import gc
import json
import logging
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
import pytest
from absl import logging as absl_logging

from jax_rnnlm import checkpoint, data, model, optim, step, train, workdir as wd
from jax_rnnlm.checkpoint import CheckpointError
from jax_rnnlm.config import DataConfig, ModelConfig, TrainConfig
from jax_rnnlm.workdir import WorkdirError
from support.trees import assert_trees_equal

WORKER = Path(__file__).parent / "support" / "kill_worker.py"
# 280 train tokens, B = 2, T = 5: 27 windows an epoch, 3 per call, a checkpoint every 6 steps.
FLAGS = ["--cell", "lstm", "--embed-dim", "8", "--hidden-dim", "8", "--batch-size", "2",
         "--bptt", "5", "--epochs", "3", "--lr", "1", "--dropout", "0.2",
         "--windows-per-call", "3", "--save-every", "6", "--log-every", "3", "--seed", "4"]


def train_args(corpus_dir, workdir, *extra):
    return ["train", "--data", str(corpus_dir), "--workdir", str(workdir), *FLAGS, *extra]


def worker(point, args, timeout=600):
    return subprocess.run([sys.executable, str(WORKER), point, *args], capture_output=True,
                          text=True, timeout=timeout)


def losses(workdir):
    lines = wd.read_metrics(workdir)
    return [(l["step"], l["train_loss"]) for l in lines if "train_loss" in l], \
        [(l["step"], l["val_ppl"]) for l in lines if "val_ppl" in l and "test_ppl" not in l]


def template(mcfg, cfg):
    tx = optim.from_config(cfg)
    return step.init_state(jax.random.key(cfg.seed), mcfg, tx, cfg.batch_size, cfg.dni)


def final_state(workdir):
    mcfg, cfg, _, _ = wd.read_run_info(workdir)
    return checkpoint.restore_state(workdir, template(mcfg, cfg))


@pytest.mark.parametrize("extra, points", [
    ((), ("call:5", "mid-save:36", "call:6")),
    (("--synthetic-gradients", "mlp", "--sg-scale", "0.5"), ("call:5", "call:6")),
    (("--variable-bptt",), ("call:5", "call:6")),
    (("--optimizer", "ntasgd", "--nonmono", "1", "--variational", "--weight-drop", "0.3",
      "--dropout-embed", "0.1", "--ar", "1", "--tar", "1"), ("call:5", "call:6"))])
def test_killed_runs_resume_bitwise_identically(tiny_corpus_dir, extra, points):
    """Killed after call 5 (step 15; last save at 12), mid-save of step 36, after call 6
    of the third run (its first call compiles, the kill lands in epoch 3), then finished;
    with synthetic gradients on, their module and its optimizer state resume too; with
    NT-ASGD and the AWD regularisers, the iterate average and the val history."""
    ref, cut = tiny_corpus_dir / "ref", tiny_corpus_dir / "cut"
    done = worker("never", train_args(tiny_corpus_dir, ref, *extra))
    assert done.returncode == 0, done.stderr
    for point in points:
        killed = worker(point, train_args(tiny_corpus_dir, cut, *extra))
        assert killed.returncode == -signal.SIGKILL, killed.stderr
    final = worker("never", train_args(tiny_corpus_dir, cut, *extra))
    assert final.returncode == 0, final.stderr
    assert "resuming from step" in final.stderr
    assert losses(cut) == losses(ref) and len(losses(ref)[0]) >= 20  # 27 at a fixed T
    assert json.loads(final.stdout.splitlines()[-1])["test_ppl"] == \
        json.loads(done.stdout.splitlines()[-1])["test_ppl"]
    assert_trees_equal(final_state(cut), final_state(ref))


def test_sigterm_saves_and_exits_resumable(tiny_corpus_dir):
    workdir = tiny_corpus_dir / "run"
    proc = subprocess.Popen([sys.executable, "-m", "jax_rnnlm",
                             *train_args(tiny_corpus_dir, workdir, "--epochs", "100000")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = workdir / "metrics.jsonl"
    deadline = time.time() + 300
    while not (metrics.is_file() and metrics.read_text().count("\n") >= 3):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 75
    assert "interrupted at step" in err and "resumable" in err
    step = int(err.split("interrupted at step ")[1].split(",")[0])
    with checkpoint.Checkpoints(workdir) as ckpt:
        assert ckpt.latest_step() == step


def small_run(corpus_dir, workdir, **overrides):
    corpus = data.load_corpus(corpus_dir)
    mcfg = ModelConfig(vocab_size=len(corpus.vocab), embed_dim=8, hidden_dim=8, cell="gru")
    cfg = TrainConfig(**{"batch_size": 2, "bptt": 5, "epochs": 1, "save_every": 5,
                         "windows_per_call": 5, **overrides})
    return mcfg, cfg, corpus


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(tiny_corpus_dir):
    workdir = tiny_corpus_dir / "run"
    mcfg, cfg, corpus = small_run(tiny_corpus_dir, workdir)
    train.fit(mcfg, cfg, corpus, workdir, echo=lambda s: None)
    with checkpoint.Checkpoints(workdir) as ckpt:
        steps = sorted(ckpt.last.all_steps())
    newest = workdir / "checkpoints" / str(steps[-1]) / "state"
    for f in newest.rglob("*"):
        if f.is_file() and f.parent.name == "d":
            f.write_bytes(b"garbage")  # corrupt every array chunk
    messages = []
    with checkpoint.Checkpoints(workdir) as ckpt:
        state, _ = ckpt.restore(template(mcfg, cfg), echo=messages.append)
    assert int(state.step) == steps[-2]
    assert f"checkpoint of step {steps[-1]}" in messages[0] and "unreadable" in messages[0]


def test_a_damaged_checkpoint_is_reported_in_one_line_without_tracebacks(tiny_corpus_dir):
    """Through the command line: the fallback message, and nothing from orbax's internals
    (an asyncio 'Event loop is closed' traceback used to reach the terminal)."""
    workdir = tiny_corpus_dir / "run"
    assert subprocess.run([sys.executable, "-m", "jax_rnnlm",
                           *train_args(tiny_corpus_dir, workdir, "--epochs", "1")],
                          capture_output=True, timeout=600).returncode == 0
    with checkpoint.Checkpoints(workdir) as ckpt:
        newest = max(ckpt.last.all_steps())
    for f in (workdir / "checkpoints" / str(newest) / "state").rglob("*"):
        if f.is_file() and f.parent.name == "d":
            f.write_bytes(b"garbage")
    done = subprocess.run([sys.executable, "-m", "jax_rnnlm", "eval", "--workdir", str(workdir)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"checkpoint of step {newest}" in done.stderr and "unreadable" in done.stderr
    assert "Traceback" not in done.stderr and "Event loop is closed" not in done.stderr


# A run of six steps with a checkpoint every two (steps 2, 4, 6), trained once for the
# tests below; each one damages a copy of it.
RUN_ARGS = ["--embed-dim", "8", "--hidden-dim", "8", "--batch-size", "2", "--bptt", "4",
            "--max-steps", "6", "--save-every", "2", "--windows-per-call", "2", "--keep", "3"]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "jax_rnnlm", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def six_step_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("six_step_run")
    corpus = root / "corpus"
    corpus.mkdir()
    lines = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog"]
    for split, n in (("train", 40), ("valid", 6), ("test", 6)):
        (corpus / f"{split}.txt").write_text("\n".join(lines * (n // 3 + 1)) + "\n")
    done = cli("train", "--data", corpus, "--workdir", root / "run", *RUN_ARGS)
    assert done.returncode == 0, done.stderr
    assert sorted(int(p.name) for p in (root / "run" / "checkpoints").iterdir()) == [2, 4, 6]
    return corpus, root / "run"


def damaged_copy(run, tmp_path, damage, steps=(6,)):
    """A copy of ``run`` whose checkpoints ``steps`` are damaged: 'chunks' truncates the
    array data, 'manifest' deletes the OCDBT manifest, 'metadata' the tree metadata."""
    workdir = tmp_path / "run"
    shutil.copytree(run, workdir)
    for s in steps:
        state = workdir / "checkpoints" / str(s) / "state"
        if damage == "chunks":
            chunks = [f for f in state.rglob("*") if f.is_file() and f.parent.name == "d"]
            assert chunks
            for f in chunks:
                f.write_bytes(f.read_bytes()[:10])
        else:
            (state / {"manifest": "manifest.ocdbt", "metadata": "_METADATA"}[damage]).unlink()
    return workdir


REASONS = {"chunks": r"a file is truncated or corrupted: state/d/[0-9a-f]+; ValueError",
           "manifest": r"a file is missing: state/manifest\.ocdbt; ValueError",
           "metadata": r"a file is missing: state/_METADATA; ValueError"}


def assert_one_line_fallback(stderr, workdir, damage):
    """The skipped step is named in one line with a readable reason, and nothing of
    orbax, absl, asyncio or TensorStore is printed besides."""
    lines = stderr.splitlines()
    assert "Traceback" not in stderr and "absl" not in stderr and "tensorstore" not in stderr
    assert len(lines) < 5, stderr
    skipped = [l for l in lines if "checkpoint of step" in l]
    assert len(skipped) == 1, stderr
    assert re.fullmatch(rf"checkpoint of step 6 in {re.escape(str(workdir))}/checkpoints is "
                        rf"unreadable \({REASONS[damage]}( \w+)?\); trying step 4",
                        skipped[0]), skipped[0]


@pytest.mark.parametrize("damage", ["chunks", "manifest", "metadata"])
def test_eval_skips_a_damaged_newest_checkpoint_in_one_line(six_step_run, tmp_path, damage):
    workdir = damaged_copy(six_step_run[1], tmp_path, damage)
    done = cli("eval", "--workdir", workdir)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["step"] == 4
    assert_one_line_fallback(done.stderr, workdir, damage)


def test_a_resumed_train_skips_a_damaged_newest_checkpoint_in_one_line(six_step_run, tmp_path):
    corpus, run = six_step_run
    workdir = damaged_copy(run, tmp_path, "chunks")
    done = cli("train", "--data", corpus, "--workdir", workdir, *RUN_ARGS)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["steps"] == 6
    assert "resuming from step 4" in done.stderr
    assert_one_line_fallback(done.stderr, workdir, "chunks")


def test_eval_with_every_checkpoint_damaged_says_so_without_tracebacks(six_step_run, tmp_path):
    workdir = damaged_copy(six_step_run[1], tmp_path, "manifest", steps=(2, 4, 6))
    done = cli("eval", "--workdir", workdir)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert [l.split(" is unreadable")[0] for l in lines[:3]] == [
        f"checkpoint of step {s} in {workdir}/checkpoints" for s in (6, 4, 2)]
    assert lines[2].endswith("; no step left")
    assert lines[3:] == [f"jax-rnnlm eval: error: {workdir}/checkpoints: none of the "
                         f"checkpoints [6, 4, 2] could be read"]


def test_a_restore_attempt_shows_orbax_logs_only_when_it_succeeds(caplog):
    absl = logging.getLogger("absl")
    before = (list(absl.handlers), absl.propagate)
    caplog.set_level(logging.WARNING)
    with checkpoint._restore_attempt():
        absl_logging.warning("about the step that is used")
    with pytest.raises(ValueError), checkpoint._restore_attempt():
        absl_logging.warning("about a damaged step")
        raise ValueError("damaged")
    assert [r.getMessage() for r in caplog.records if r.name == "absl"] == [
        "about the step that is used"]
    assert (list(absl.handlers), absl.propagate) == before
    assert "new_event_loop" not in vars(asyncio.get_event_loop_policy())


def test_a_settling_loop_finishes_the_tasks_left_when_it_is_closed(caplog):
    """What orbax does on a failed read: the first failure ends run_until_complete and
    the loop is closed while the other reads still run."""
    loop = checkpoint._SettlingLoop()
    finished = []

    async def read(i):
        await asyncio.sleep(0.01 * i)
        finished.append(i)
        raise OSError(i)  # failures nobody awaits: retrieved by close(), not reported

    async def restore():
        return await asyncio.gather(*(read(i) for i in range(4)))
    with pytest.raises(OSError):
        loop.run_until_complete(restore())
    loop.close()
    assert finished == [0, 1, 2, 3] and loop.is_closed()
    gc.collect()  # a task left pending or unretrieved would be reported now
    assert not [r for r in caplog.records if r.name == "asyncio"]


def test_missing_files_in_every_checkpoint_is_a_clear_error(tiny_corpus_dir):
    workdir = tiny_corpus_dir / "run"
    mcfg, cfg, corpus = small_run(tiny_corpus_dir, workdir)
    train.fit(mcfg, cfg, corpus, workdir, echo=lambda s: None)
    for state_dir in (workdir / "checkpoints").glob("*/state"):
        for f in state_dir.rglob("*"):
            if f.is_file():
                f.unlink()
    with pytest.raises(CheckpointError, match="none of the checkpoints .* could be read"):
        train.fit(mcfg, cfg, corpus, workdir, echo=lambda s: None)


def test_a_run_with_other_settings_refuses_to_resume_and_says_what_differs(tiny_corpus_dir):
    workdir = tiny_corpus_dir / "run"
    mcfg, cfg, corpus = small_run(tiny_corpus_dir, workdir)
    train.fit(mcfg, cfg, corpus, workdir, echo=lambda s: None)
    bigger = ModelConfig(**{**mcfg.__dict__, "hidden_dim": 16, "embed_dim": 16})
    with pytest.raises(WorkdirError, match=r"model.hidden_dim: checkpoint has 8, this run "
                                              r"has 16"):
        train.fit(bigger, cfg, corpus, workdir, echo=lambda s: None)
    other = tiny_corpus_dir / "other"
    other.mkdir()
    for split in data.SPLITS:
        (other / f"{split}.txt").write_text("one two three four five six\n" * 30)
    corpus2 = data.load_corpus(other)
    mcfg2 = ModelConfig(**{**mcfg.__dict__, "vocab_size": len(corpus2.vocab)})
    with pytest.raises(WorkdirError, match=r"model.vocab_size: checkpoint has 10, this run "
                                              r"has 7"):
        train.fit(mcfg2, cfg, corpus2, workdir, echo=lambda s: None)


def test_more_epochs_continue_the_run(tiny_corpus_dir):
    workdir = tiny_corpus_dir / "run"
    mcfg, cfg, corpus = small_run(tiny_corpus_dir, workdir)
    first = train.fit(mcfg, cfg, corpus, workdir, echo=lambda s: None)
    messages = []
    more = train.fit(mcfg, TrainConfig(**{**cfg.__dict__, "epochs": 2}), corpus, workdir,
                     echo=messages.append)
    assert more["steps"] == 2 * first["steps"]
    assert any(m.startswith(f"resuming from step {first['steps']}") for m in messages)


def test_resume_refuse_and_fresh(tiny_corpus_dir):
    workdir = tiny_corpus_dir / "run"
    mcfg, cfg, corpus = small_run(tiny_corpus_dir, workdir)
    train.fit(mcfg, cfg, corpus, workdir, echo=lambda s: None)
    with pytest.raises(WorkdirError, match="already holds checkpoints"):
        train.fit(mcfg, cfg, corpus, workdir, resume="refuse", echo=lambda s: None)
    train.fit(mcfg, cfg, corpus, workdir, resume="fresh", echo=lambda s: None)
    assert len(list(workdir.glob("checkpoints.old-*"))) == 1  # set aside, not deleted


def test_best_checkpoint_is_kept_beside_the_last_ones(tiny_corpus_dir):
    workdir = tiny_corpus_dir / "run"
    mcfg, cfg, corpus = small_run(tiny_corpus_dir, workdir, epochs=3, keep=1)
    train.fit(mcfg, cfg, corpus, workdir, echo=lambda s: None)
    with checkpoint.Checkpoints(workdir) as ckpt:
        assert len(ckpt.last.all_steps()) == 1 and len(ckpt.best.all_steps()) == 1


def test_only_settings_declared_resumable_may_change(tiny_corpus_dir):
    workdir = tiny_corpus_dir / "run"
    mcfg, cfg, corpus = small_run(tiny_corpus_dir, workdir)
    train.fit(mcfg, cfg, corpus, workdir, echo=lambda s: None)
    saved = wd.read_saved_info(workdir)
    changed = TrainConfig(**{**cfg.__dict__, "seed": 9, "log_every": 7, "devices": 1})
    data_cfg = DataConfig(data=corpus.source, level="word", data_cache="/elsewhere")
    info = wd.run_info(mcfg, changed, data_cfg, corpus)
    assert wd.differences(saved, info, corpus.vocab, corpus.vocab) == [
        "train.seed: checkpoint has 0, this run has 9"]
    del saved["train"]["keep"], saved["model"]["dtype"]  # an older config.json: defaults
    assert wd.differences(saved, wd.run_info(mcfg, cfg, data_cfg, corpus),
                          corpus.vocab, corpus.vocab) == []
    fewer = wd.run_info(mcfg, cfg, dataclasses.replace(data_cfg, min_count=2), corpus)
    assert wd.differences(saved, fewer, corpus.vocab, corpus.vocab) == [
        "data.min_count: checkpoint has 1, this run has 2"]


def poison_token(monkeypatch, token_id):
    """Make every window that reads ``token_id`` produce a NaN loss."""
    init = model.init_params

    def poisoned(key, cfg):
        params = init(key, cfg)
        params["embed"] = params["embed"].at[token_id].set(jnp.nan)
        return params
    monkeypatch.setattr(model, "init_params", poisoned)


def test_non_finite_loss_stops_with_a_diagnosis_and_no_checkpoint(tiny_corpus_dir, monkeypatch):
    workdir = tiny_corpus_dir / "run"
    mcfg, cfg, corpus = small_run(tiny_corpus_dir, workdir)
    poison_token(monkeypatch, corpus.vocab.index["a"])  # first read in window 3
    with pytest.raises(train.NonFiniteError, match=r"non-finite values at step 3: loss, "
                                                   r"grad of .*; last finite loss \d"):
        train.fit(mcfg, cfg, corpus, workdir, echo=lambda s: None)
    with checkpoint.Checkpoints(workdir) as ckpt:
        assert ckpt.latest_step() is None


def test_non_finite_batches_can_be_skipped_and_counted(tiny_corpus_dir, monkeypatch):
    workdir = tiny_corpus_dir / "run"
    mcfg, cfg, corpus = small_run(tiny_corpus_dir, workdir, on_nonfinite="skip")
    poison_token(monkeypatch, corpus.vocab.index["a"])
    summary = train.fit(mcfg, cfg, corpus, workdir, echo=lambda s: None)
    assert 0 < summary["skipped"] < summary["steps"]




def test_disk_full_during_save_is_reported_and_keeps_the_previous_checkpoint(
        tiny_corpus_dir, monkeypatch):
    workdir = tiny_corpus_dir / "run"
    mcfg, cfg, corpus = small_run(tiny_corpus_dir, workdir)
    save = ocp.CheckpointManager.save

    def full_after_first(self, step, *a, **k):
        if step > 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(self, step, *a, **k)
    monkeypatch.setattr(ocp.CheckpointManager, "save", full_after_first)
    with pytest.raises(CheckpointError, match=r"could not write the checkpoint of step 10: No "
                                              r"space left on device; the previous "
                                              r"checkpoint \(step 5\) is intact"):
        train.fit(mcfg, cfg, corpus, workdir, echo=lambda s: None)


def test_checkpoints_of_another_program_are_not_touched(tiny_corpus_dir):
    workdir = tiny_corpus_dir / "run"
    (workdir / "checkpoints").mkdir(parents=True)
    (workdir / "checkpoints" / "model.pt").write_text("torch")
    mcfg, cfg, corpus = small_run(tiny_corpus_dir, workdir)
    with pytest.raises(WorkdirError, match="is not a jax-rnnlm workdir"):
        train.fit(mcfg, cfg, corpus, workdir, echo=lambda s: None)
    assert (workdir / "checkpoints" / "model.pt").read_text() == "torch"


def test_unwritable_workdir_is_named(tiny_corpus_dir):
    blocker = tiny_corpus_dir / "a_file"
    blocker.write_text("")
    mcfg, cfg, corpus = small_run(tiny_corpus_dir, blocker / "run")
    with pytest.raises(WorkdirError, match=r"cannot write to workdir .*a_file/run"):
        train.fit(mcfg, cfg, corpus, blocker / "run", echo=lambda s: None)


def test_unreadable_run_config_is_named(tiny_corpus_dir):
    workdir = tiny_corpus_dir / "run"
    workdir.mkdir()
    (workdir / "config.json").write_text("{not json")
    with pytest.raises(WorkdirError, match="config.json or vocab.json is unreadable"):
        wd.read_run_info(workdir)
