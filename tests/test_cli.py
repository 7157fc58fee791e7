"""The command line end to end: train -> eval on a tiny corpus, and clear errors."""
import json
import subprocess
import sys

import pytest

from jax_rnnlm.cli import build_parser, main


def jax_rnnlm(*args):
    return subprocess.run([sys.executable, "-m", "jax_rnnlm", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_train_then_eval_reports_the_same_perplexity(tiny_corpus_dir):
    workdir = tiny_corpus_dir / "run"
    done = jax_rnnlm("train", "--data", tiny_corpus_dir, "--workdir", workdir, "--cell", "gru",
                     "--embed-dim", "8", "--hidden-dim", "8", "--batch-size", "2", "--bptt", "5",
                     "--epochs", "2", "--lr", "1", "--eval-batch-size", "2")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"val_ppl", "test_ppl", "tokens_per_s", "wall_s"} <= set(summary)
    assert (workdir / "config.json").is_file() and (workdir / "metrics.jsonl").is_file()
    evaluated = jax_rnnlm("eval", "--workdir", workdir, "--split", "valid", "--batch-size", "2")
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads(evaluated.stdout)
    assert result["ppl"] == pytest.approx(summary["val_ppl"], rel=1e-5)
    test = json.loads(jax_rnnlm("eval", "--workdir", workdir).stdout)
    assert test["ppl"] == pytest.approx(summary["test_ppl"], rel=1e-5)


def test_bad_data_path_is_a_one_line_error(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "missing"), "--workdir",
                 str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert "jax-rnnlm train: error:" in err and "missing: no such file or directory" in err


def test_bad_config_value_is_a_one_line_error(tiny_corpus_dir, capsys):
    assert main(["train", "--data", str(tiny_corpus_dir), "--workdir",
                 str(tiny_corpus_dir / "w"), "--dropout", "1.5"]) == 2
    assert r"dropout must be in [0, 1)" in capsys.readouterr().err


def test_eval_of_a_directory_that_is_no_run_says_so(tmp_path, capsys):
    assert main(["eval", "--workdir", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_every_flag_has_help():
    parser = build_parser()
    for sub in parser._subparsers._group_actions[0].choices.values():
        for action in sub._actions:
            assert action.help, f"{action.option_strings} has no help"
    names = {a.dest for a in parser._subparsers._group_actions[0].choices["train"]._actions}
    assert {"data", "level", "workdir", "cell", "embed_dim", "hidden_dim", "num_layers",
            "dropout", "tie_weights", "batch_size", "bptt", "optimizer", "lr", "clip",
            "epochs", "max_steps", "seed"} <= names
