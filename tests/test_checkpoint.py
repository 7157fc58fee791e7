"""Full-state checkpoints: exact resume after kills, signals, damaged checkpoints,
mismatched runs, non-finite values, and the errors for bad workdirs."""
import errno
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
import pytest

from jax_rnnlm import checkpoint, data, model, optim, step, train, workdir as wd
from jax_rnnlm.checkpoint import CheckpointError
from jax_rnnlm.config import ModelConfig, TrainConfig
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
    info = wd.run_info(mcfg, changed, corpus.source, "word", corpus.vocab)
    assert wd.differences(saved, info, corpus.vocab, corpus.vocab) == [
        "train.seed: checkpoint has 0, this run has 9"]
    del saved["train"]["keep"], saved["model"]["dtype"]  # an older config.json: defaults
    assert wd.differences(saved, wd.run_info(mcfg, cfg, corpus.source, "word", corpus.vocab),
                          corpus.vocab, corpus.vocab) == []


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
    with pytest.raises(WorkdirError, match="was not written by jax-rnnlm"):
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
