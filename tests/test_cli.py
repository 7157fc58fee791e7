"""The command line end to end: train -> eval on a tiny corpus, and clear errors."""
import hashlib
import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest

from jax_rnnlm import config, plot
from jax_rnnlm.cli import build_parser, main, train_settings
from jax_rnnlm.progress import format_value


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


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny word-level model trained through the CLI, shared by the tests below."""
    root = tmp_path_factory.mktemp("trained")
    lines = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog"]
    for split in ("train", "valid", "test"):
        (root / f"{split}.txt").write_text("\n".join(lines * 10) + "\n")
    assert main(["train", "--data", str(root), "--workdir", str(root / "run"), "--cell",
                 "lstm", "--embed-dim", "16", "--hidden-dim", "16", "--batch-size", "2",
                 "--bptt", "5", "--epochs", "3", "--optimizer", "adam", "--lr", "0.01",
                 "--clip", "5", "--eval-batch-size", "2"]) == 0
    return root


def run_main(capsys, *args):
    code = main(list(map(str, args)))
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_is_deterministic_for_a_seed(trained, capsys):
    args = ("generate", "--workdir", trained / "run", "--prompt", "the cat", "--length", "8",
            "--seed", "3", "--num-samples", "2")
    code, first, err = run_main(capsys, *args)
    assert code == 0, err
    assert run_main(capsys, *args)[1] == first
    assert first.startswith("the cat") and len(first.split()) >= 10


def test_generate_greedy_ways_agree(trained, capsys):
    base = ("generate", "--workdir", trained / "run", "--prompt", "a", "--length", "10")
    greedy = run_main(capsys, *base, "--temperature", "0")[1]
    assert run_main(capsys, *base, "--top-k", "1", "--seed", "7")[1] == greedy
    assert run_main(capsys, *base, "--temperature", "0.0001", "--seed", "8")[1] == greedy


def test_generate_with_unknown_prompt_words_lists_them(trained, capsys):
    code, _, err = run_main(capsys, "generate", "--workdir", trained / "run", "--prompt",
                            "the zebra and the yak")
    assert code == 2 and "'yak', 'zebra'" in err and "no <unk>" in err


def test_score_of_the_text_equals_eval_with_batch_one(trained, capsys):
    code, out, _ = run_main(capsys, "score", "--workdir", trained / "run", "--text",
                            trained / "valid.txt", "--per", "text")
    assert code == 0
    scored = json.loads(out.splitlines()[-1])
    code, out, _ = run_main(capsys, "eval", "--workdir", trained / "run", "--split", "valid")
    evaluated = json.loads(out)
    assert scored["total_tokens"] == evaluated["tokens"]
    assert scored["ppl"] == pytest.approx(evaluated["ppl"], rel=1e-4)


def file_hashes(root):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("flags, key, tuned", [
    (("--dynamic", "sgd", "--dynamic-lr", "0", "0.05"), "dynamic", True),
    (("--dynamic", "rms", "--dynamic-lr", "1e-4", "--dynamic-decay", "0.01",
      "--ms-windows", "5"), "dynamic", False),
    (("--cache", "5", "20", "--cache-theta", "0.3", "--cache-lambda", "0", "0.2"), "cache",
     True)])
def test_eval_with_adaptation_reports_static_beside_adapted_and_keeps_the_weights(
        trained, capsys, flags, key, tuned):
    """Several values of a setting are tuned on the valid split (its ppl reported)."""
    before = file_hashes(trained / "run")
    code, out, err = run_main(capsys, "eval", "--workdir", trained / "run", "--bptt", "5",
                              *flags)
    assert code == 0, err
    record = json.loads(out)
    static = json.loads(run_main(capsys, "eval", "--workdir", trained / "run", "--bptt",
                                 "5")[1])["ppl"]
    assert record["static_ppl"] == static and np.isfinite(record["ppl"])
    assert key in record and record["tokens"] == json.loads(run_main(
        capsys, "eval", "--workdir", trained / "run")[1])["tokens"]
    assert (record["tuned_valid_ppl"] is not None) == tuned
    assert file_hashes(trained / "run") == before


def test_eval_with_both_adaptations_is_a_one_line_error(trained, capsys):
    code, _, err = run_main(capsys, "eval", "--workdir", trained / "run", "--dynamic", "sgd",
                            "--cache", "10")
    assert code == 2 and "choose one" in err


def test_score_per_line_gives_consistent_log_probs(trained, capsys, tmp_path):
    text = tmp_path / "s.txt"
    text.write_text("the cat sat on the mat\nthe mat sat on the cat\n")
    code, out, _ = run_main(capsys, "score", "--workdir", trained / "run", "--text", text)
    rows = [json.loads(l) for l in out.splitlines()]
    assert code == 0 and len(rows) == 3 and rows[0]["tokens"] == 7  # six words and <eos>
    for row in rows[:2]:
        assert row["log_prob"] == pytest.approx(sum(row["token_log_probs"]), abs=1e-3)
        assert row["ppl"] == pytest.approx(math.exp(-row["log_prob"] / row["tokens"]))
    assert rows[0]["log_prob"] > rows[1]["log_prob"]  # the seen sentence is likelier
    assert rows[2]["log_prob"] == pytest.approx(rows[0]["log_prob"] + rows[1]["log_prob"])


@pytest.mark.parametrize("how", ["--workdir", "positional"])
def test_plot_writes_a_png(trained, capsys, tmp_path, how):
    out = tmp_path / "curves.png"
    runs = ["--workdir", trained / "run"] if how == "--workdir" else [trained / "run"]
    code, _, err = run_main(capsys, "plot", *runs, "--out", out)
    assert code == 0, err
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_plot_sums_the_wall_time_of_a_resumed_run():
    rows = [{"step": 1, "wall_s": 5.0}, {"step": 2, "wall_s": 9.0}, {"step": 2, "val_ppl": 3.0},
            {"step": 3, "wall_s": 2.0}, {"step": 4, "wall_s": 6.0}, {"step": 5, "wall_s": 1.0}]
    assert [r.get("wall_s") for r in plot.cumulative_wall(rows)] == [5, 9, None, 11, 15, 16]
    assert rows[3]["wall_s"] == 2.0  # the records read are left as they were


def test_scoring_empty_stdin_is_a_one_line_error(trained):
    done = subprocess.run([sys.executable, "-m", "jax_rnnlm", "score", "--workdir",
                           str(trained / "run"), "--text", "-"], input="", capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip() == ("jax-rnnlm score: error: stdin: nothing to score (it needs "
                                   "at least one line with a token, or two tokens with "
                                   "--per text)")


def test_progress_lines_print_tokens_per_second_as_plain_numbers(tiny_corpus_dir):
    done = jax_rnnlm("train", "--data", tiny_corpus_dir, "--workdir", tiny_corpus_dir / "r",
                     "--embed-dim", "8", "--hidden-dim", "8", "--batch-size", "2", "--bptt",
                     "5", "--log-every", "5", "--windows-per-call", "5", "--max-steps", "15")
    assert done.returncode == 0, done.stderr
    lines = [l for l in done.stderr.splitlines() if l.startswith("step ")]
    assert "tok_s -" in lines[0]  # no rate before a second (not compiling) call
    assert re.search(r"tok_s [\d,.]+  ", lines[-1]), lines[-1]
    assert [format_value(v) for v in (11450.3, 4.6031, 0.001, 7, None)] == [
        "11,450", "4.603", "0.001", "7", "-"]


def resolve(*argv):
    """(data, model, train) settings of a train command line."""
    return train_settings(build_parser().parse_args(["train", "--workdir", "w", *argv]))


def test_config_file_then_flags_override(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('hidden-dim = 64\nembed_dim = 64\nlr = 3.0\ntie-weights = true\n')
    _, model, tr = resolve("--preset", "ptb-lstm-small", "--config", str(cfg), "--lr", "7")
    assert (model.hidden_dim, tr.lr, tr.bptt, model.tie_weights) == (64, 7.0, 20, True)
    _, model, tr = resolve("--preset", "ptb-lstm-small", "--no-tie-weights", "--config",
                           str(cfg))
    assert model.tie_weights is False and tr.lr == 3.0


@pytest.mark.parametrize("line, key, problem", [
    ('variational = "no"', "variational", "must be true or false"),
    ("seed = true", "seed", "must be an integer"),
    ("max_steps = 20.5", "max_steps", "must be an integer"),
    ('hidden_dim = "abc"', "hidden_dim", "must be an integer"),
    ("data = 5", "data", "must be a string"),
    ('softmax = "adaptive"\ncutoffs = 1000', "cutoffs", "must be a list of integers"),
    ("lr = nan", "lr", "must be a finite number"),
    ("dropout = 1.0", "dropout", "must be in [0, 1)"),
    ('cell = "lstmm"', "cell", "must be one of rnn, lstm, gru"),
    ("min_count = 0", "min_count", "must be >= 1"),
    ("max_vocab = 1", "max_vocab", "must be 0 (all) or at least 2"),
])
def test_config_file_values_get_the_checks_of_flags_naming_file_and_key(tmp_path, line, key,
                                                                        problem):
    cfg = tmp_path / "c.toml"
    cfg.write_text(line + "\n")
    with pytest.raises(ValueError) as e:
        resolve("--config", str(cfg))
    assert str(e.value).startswith(f"{cfg}: {key} {problem}")
    assert "--" not in str(e.value)


def test_a_bad_flag_value_names_the_flag():
    with pytest.raises(ValueError, match=r"^--max-steps must be an integer, got '20.5'$"):
        resolve("--max-steps", "20.5")
    with pytest.raises(ValueError, match=r"^--init-scale must be a finite number, got inf$"):
        resolve("--init-scale", "inf")


def test_a_preset_value_overridden_by_a_flag_is_checked_as_the_flag():
    with pytest.raises(ValueError, match=r"^--dropout must be in \[0, 1\), got 2.0$"):
        resolve("--preset", "ptb-lstm-medium", "--dropout", "2")


def test_unknown_config_keys_are_rejected(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text('{"hidden_dim": 8, "hiden_dim": 9}')
    code, _, err = run_main(capsys, "train", "--workdir", tmp_path / "w", "--config", cfg)
    assert code == 2 and "unknown setting(s) hiden_dim" in err


def test_presets_are_valid_configs():
    for name in config.PRESETS:
        data_cfg, model, tr = resolve("--preset", name)
        assert data_cfg.data == config.PRESETS[name]["data"] and tr.epochs > 1


def test_the_awd_preset_trains_and_averages_at_a_tiny_size(tiny_corpus_dir, capsys):
    """The awd-lstm preset's structure (3 layers, a narrower tied last layer, every
    regulariser, variable-length BPTT, NT-ASGD switching on: in epoch 6) at toy widths; the full size is smoke-tested
    by experiments/awd_lstm.py."""
    code, out, err = run_main(capsys, "train", "--preset", "awd-lstm", "--data", tiny_corpus_dir,
                              "--workdir", tiny_corpus_dir / "awd", "--embed-dim", "6",
                              "--hidden-dim", "10", "--last-hidden-dim", "6", "--bptt", "5",
                              "--batch-size", "2", "--epochs", "6", "--nonmono", "1",
                              "--lr", "30", "--eval-batch-size", "2")
    assert code == 0, err
    assert "averaging the iterates from here on" in err
    assert math.isfinite(json.loads(out.splitlines()[-1])["test_ppl"])


def test_train_eval_generate_score_with_the_adaptive_softmax(tiny_corpus_dir, capsys):
    """Frequency-ordered vocabulary (so the head holds the common words), and every
    command that reads the output layer works with it; score --per text equals eval."""
    work = tiny_corpus_dir / "adaptive"
    code, out, err = run_main(capsys, "train", "--data", tiny_corpus_dir, "--workdir", work,
                              "--softmax", "adaptive", "--cutoffs", "3,6", "--div-value", "2",
                              "--embed-dim", "8", "--hidden-dim", "8", "--batch-size", "2",
                              "--bptt", "5", "--epochs", "2", "--lr", "5")
    assert code == 0, err
    vocab = json.loads((work / "vocab.json").read_text())
    words = vocab if isinstance(vocab, list) else vocab["words"]
    assert words[:2] == ["the", "<eos>"]  # the two most frequent types of the train split
    ev = json.loads(run_main(capsys, "eval", "--workdir", work, "--split", "valid")[1])
    scored = json.loads(run_main(capsys, "score", "--workdir", work, "--text",
                                 tiny_corpus_dir / "valid.txt", "--per", "text")[1]
                        .splitlines()[-1])
    assert scored["ppl"] == pytest.approx(ev["ppl"], rel=1e-4)
    code, out, err = run_main(capsys, "generate", "--workdir", work, "--prompt", "the cat",
                              "--length", "5")
    assert code == 0 and out.startswith("the cat"), err


@pytest.mark.parametrize("cell", ["mingru", "minlstm", "rglru"])
def test_a_parallel_cell_trains_resumes_and_serves_every_command(tiny_corpus_dir, capsys, cell):
    """--cell by name through the command line: train (bf16 for one), resume with the
    other time loop, eval with the cache and dynamic evaluation, generate, score."""
    work = tiny_corpus_dir / cell
    base = ("train", "--data", tiny_corpus_dir, "--workdir", work, "--cell", cell,
            "--embed-dim", "8", "--hidden-dim", "8", "--num-layers", "2", "--batch-size", "2",
            "--bptt", "5", "--lr", "1", "--eval-batch-size", "2", "--variational",
            "--dropout", "0.1", "--dtype", "bfloat16" if cell == "rglru" else "float32")
    code, out, err = run_main(capsys, *base, "--max-steps", "4")
    assert code == 0, err
    code, out, err = run_main(capsys, *base, "--max-steps", "8", "--time-loop", "scan")
    assert code == 0 and "resuming from step 4" in err, err
    assert json.loads(out.splitlines()[-1])["steps"] == 8
    for flags in ((), ("--cache", "10"), ("--dynamic", "sgd", "--bptt", "5")):
        code, out, err = run_main(capsys, "eval", "--workdir", work, "--split", "valid", *flags)
        assert code == 0 and math.isfinite(json.loads(out)["ppl"]), err
    code, out, err = run_main(capsys, "generate", "--workdir", work, "--prompt", "the cat",
                              "--length", "4", "--json")
    assert code == 0 and json.loads(out)["text"].startswith("the cat"), err
    code, out, err = run_main(capsys, "score", "--workdir", work, "--text",
                              tiny_corpus_dir / "valid.txt")
    assert code == 0 and math.isfinite(json.loads(out.splitlines()[-1])["ppl"]), err
