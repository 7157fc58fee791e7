"""Every bad input is refused through the real command line, with one clear line and no work.

The contract each case checks (``check_refused``):
  * exit status 2, nothing on stdout;
  * stderr is exactly one non-empty line ``jax-rnnlm <subcommand>: error: ...``, no Traceback;
  * the message is specific: it matches the case's patterns (case-insensitive);
  * nothing was written: every case runs in a directory of its own (holding its input
    files and, for the cases on a trained run, its own copy of that run), and that
    directory is byte for byte the same afterwards, so a refused train created no
    workdir and a refused eval, generate, score or plot changed no file of the run.

The cases run concurrently in one module fixture (each subprocess imports JAX); one
parametrized test per case then checks its result. Two more tests check that stdout
carries only strict JSON, also when stderr is a terminal.
"""
import concurrent.futures
import hashlib
import json
import os
import pty
import re
import shutil
import subprocess
import sys
import threading
from collections import namedtuple
from pathlib import Path

import pytest

from jax_rnnlm.settings import tomllib  # tomli on Python 3.10

TIMEOUT_S = 120

# A tiny word corpus: valid and test hold 12 tokens each, too few for 50 streams.
TRAIN_LINES = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog"] * 14
VALID_TEXT = "a cat and a dog\na dog and a cat\n"
TEST_TEXT = "the cat sat on\nthe dog sat on the log\n"

# One text file cut 90/5/5: "zebra" appears only in its last 10%, and there is no <unk>.
PLAIN_TEXT = "\n".join(["the cat sat on the mat"] * 37 + ["the zebra sat on the mat"] * 3) + "\n"

FOREIGN = {"wd/config.json": '{"lr": 3}\n', "wd/notes.txt": "another program's run\n"}

Case = namedtuple("Case", "name argv expect files forbid several_lines",
                  defaults=({}, (), False))
Case.__doc__ = """One refused command line.

name: the test id. argv: the arguments after ``jax-rnnlm``, with placeholders {corpus}
(the tiny corpus), {dir} (this case's own directory, also the working directory) and
{run} (this case's own copy of the trained workdir). expect: regexes the message must
match (case-insensitive; ``key`` spells a train setting as flag or as config key).
files: {path under {dir}: text} written before the run. forbid: substrings the message
must not hold. several_lines: the message may take several lines (the first still
starts with the prefix)."""


def key(name):
    """A flag or config key, spelt with dashes or underscores: 'max-vocab' ~ 'max_vocab'."""
    return r"\b" + "[-_]".join(map(re.escape, re.split(r"[-_]", name))) + r"\b"


TRAIN_FLAGS = {"data": "{corpus}", "workdir": "{dir}/new_run", "embed-dim": "8",
               "hidden-dim": "8", "batch-size": "2", "bptt": "4", "max-steps": "2",
               "eval-batch-size": "2"}


def train(*extra, omit=(), **flags):
    """``train`` on the tiny corpus into a fresh workdir: TRAIN_FLAGS with ``flags``
    (underscores for dashes) in place of some and those named in ``omit`` left out."""
    chosen = {**TRAIN_FLAGS, **{k.replace("_", "-"): v for k, v in flags.items()}}
    return ["train", *(a for name, value in chosen.items() if name not in omit
                       for a in ("--" + name, value)), *extra]


def config_case(name, text, bad_key, filename="settings.toml", forbid=()):
    """A --config file with one bad setting: the message names the file and the key.
    No flag overrides a setting of the file, so the bad value is the one in force."""
    settings = tomllib.loads(text) if filename.endswith(".toml") else json.loads(text)
    return Case(name, train("--config", "{dir}/" + filename,
                            omit={k.replace("_", "-") for k in settings}),
                (key(bad_key), re.escape(filename)), {filename: text}, forbid)


def on_run(command, *extra):
    return [command, "--workdir", "{run}", *extra]


CASES = [
    # train: the workdir
    Case("train_foreign_config_json", train(workdir="{dir}/wd"), ("not a jax-rnnlm",),
         FOREIGN),
    Case("train_nonempty_unmarked_dir", train(workdir="{dir}/wd"), ("not a jax-rnnlm",),
         {"wd/data.csv": "a,b\n1,2\n"}),
    Case("train_resume_different_model", train(workdir="{run}", hidden_dim="16"),
         ("hidden",), several_lines=True),
    # train: the vocabulary and the data
    Case("train_max_vocab_1", train("--max-vocab", "1"), (key("max-vocab"),)),
    Case("train_max_vocab_negative", train("--max-vocab", "-1"), (key("max-vocab"),)),
    Case("train_min_count_negative", train("--min-count", "-5"), (key("min-count"),)),
    Case("train_min_count_huge", train("--min-count", "100000"), ("vocabulary",)),
    Case("train_eval_batch_too_large", train("--eval-batch-size", "50"),
         (key("eval-batch-size"),)),
    Case("train_test_batch_too_large", train("--test-batch-size", "50"),
         (key("test-batch-size"),)),
    Case("train_init_scale_inf", train("--init-scale", "inf"), (key("init-scale"),)),
    Case("train_init_scale_nan", train("--init-scale", "nan"), (key("init-scale"),)),
    Case("train_data_cache_is_file", train("--data-cache", "{dir}/afile"),
         (key("data-cache"),), {"afile": "not a directory\n"}),
    Case("train_data_cache_under_file", train("--data-cache", "{dir}/afile/sub"),
         (key("data-cache"),), {"afile": "not a directory\n"}),
    Case("train_unknown_corpus", train(data="nosuchcorpus"), ("wikitext-2",)),
    Case("train_plain_text_unknown_valid_word", train(data="{dir}/corpus.txt"),
         ("--min-count 2",), {"corpus.txt": PLAIN_TEXT}),
    # train: settings from a --config file
    config_case("config_variational_str", 'variational = "no"\n', "variational"),
    config_case("config_seed_bool", "seed = true\n", "seed"),
    config_case("config_cutoffs_int", 'softmax = "adaptive"\ncutoffs = 1000\n', "cutoffs"),
    config_case("config_data_int", "data = 5\n", "data"),
    config_case("config_max_steps_float", "max_steps = 20.5\n", "max_steps"),
    config_case("config_hidden_dim_str", 'hidden_dim = "abc"\n', "hidden_dim",
                forbid=("--hidden-dim",)),
    config_case("config_unknown_key", "hiden_dim = 3\n", "hiden_dim"),
    config_case("config_json_lr_str", '{"lr": "fast"}\n', "lr", filename="settings.json"),
    # eval: flags of the command line alone, so the message names them as typed
    Case("eval_bptt_negative", on_run("eval", "--bptt", "-1"), ("bptt",)),
    Case("eval_bptt_zero", on_run("eval", "--bptt", "0"), ("bptt",)),
    Case("eval_batch_size_zero", on_run("eval", "--batch-size", "0"), ("batch-size",)),
    Case("eval_cache_batch_size_zero", on_run("eval", "--batch-size", "0", "--cache", "10"),
         ("batch-size",)),
    Case("eval_dynamic_bptt_zero", on_run("eval", "--bptt", "0", "--dynamic", "sgd"),
         ("bptt",)),
    Case("eval_level_mismatch", on_run("eval", "--level", "char"), ("level",)),
    Case("eval_cache_theta_nan", on_run("eval", "--cache", "10", "--cache-theta", "nan"),
         ("cache-theta",)),
    Case("eval_ms_windows_zero", on_run("eval", "--dynamic", "rms", "--ms-windows", "0"),
         ("ms-windows",)),
    Case("eval_ms_windows_negative", on_run("eval", "--dynamic", "rms", "--ms-windows", "-3"),
         ("ms-windows",)),
    Case("eval_dynamic_eps_negative", on_run("eval", "--dynamic", "rms", "--dynamic-eps", "-1"),
         ("dynamic-eps",)),
    Case("eval_batch_too_large", on_run("eval", "--batch-size", "50", "--split", "valid"),
         ("batch-size",)),
    Case("eval_data_cache_is_file", on_run("eval", "--data-cache", "{dir}/afile"),
         ("data-cache",), {"afile": "not a directory\n"}),
    Case("eval_workdir_is_no_run", ["eval", "--workdir", "{dir}"], (r"config\.json",)),
    # generate
    Case("generate_length_negative", on_run("generate", "--length", "-5"), ("length",)),
    Case("generate_num_samples_zero", on_run("generate", "--num-samples", "0"),
         ("num-samples",)),
    Case("generate_top_p_zero", on_run("generate", "--top-p", "0"), ("top-p",)),
    Case("generate_top_p_negative", on_run("generate", "--top-p", "-0.5"), ("top-p",)),
    Case("generate_top_p_above_1", on_run("generate", "--top-p", "1.5"), ("top-p",)),
    Case("generate_temperature_negative", on_run("generate", "--temperature", "-1"),
         ("temperature",)),
    Case("generate_temperature_nan", on_run("generate", "--temperature", "nan"),
         ("temperature",)),
    Case("generate_top_k_negative", on_run("generate", "--top-k", "-1"), ("top-k",)),
    # score, plot
    Case("score_missing_text", on_run("score", "--text", "{dir}/missing.txt"),
         ("no such file",)),
    Case("plot_out_in_missing_dir", ["plot", "--workdir", "{run}", "--out",
                                     "{dir}/missing_dir/c.png"], ("missing_dir",)),
]
assert len({c.name for c in CASES}) == len(CASES), "case names must be unique"


# --- running the command line ---------------------------------------------------------

def cli_env(root):
    return {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_RNNLM_CACHE": str(root / "id_cache")}


def jax_rnnlm(argv, env, cwd):
    return subprocess.run([sys.executable, "-m", "jax_rnnlm", *map(str, argv)],
                          capture_output=True, text=True, timeout=TIMEOUT_S, env=env, cwd=cwd)


def snapshot(folder):
    """{relative path: sha256 of a file, or '<dir>'} of everything under ``folder``."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            if p.is_file() else "<dir>" for p in sorted(folder.rglob("*"))}


def changes(before, after):
    """The paths created, removed or rewritten, as readable lines (empty when none);
    a created folder is one line."""
    created = sorted(set(after) - set(before))
    tops = [p for p in created if not any(p.startswith(q + os.sep) for q in created)]
    lines = [f"created {p}" + (f" (and {n} paths inside)" if (n := sum(
        q.startswith(p + os.sep) for q in created)) else "") for p in tops]
    lines += [f"removed {p}" for p in sorted(set(before) - set(after))]
    lines += [f"changed {p}" for p in sorted(set(before) & set(after)) if before[p] != after[p]]
    return lines


def write_corpus(folder):
    folder.mkdir(parents=True)
    (folder / "train.txt").write_text("\n".join(TRAIN_LINES) + "\n")
    (folder / "valid.txt").write_text(VALID_TEXT)
    (folder / "test.txt").write_text(TEST_TEXT)
    return folder


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("bad_input")


@pytest.fixture(scope="module")
def corpus(root):
    return write_corpus(root / "corpus")


@pytest.fixture(scope="module")
def trained(root, corpus):
    """A tiny word-level LSTM run, trained once through the command line."""
    run = root / "run"
    done = jax_rnnlm(["train", "--data", corpus, "--workdir", run, "--embed-dim", "8",
                      "--hidden-dim", "8", "--batch-size", "2", "--bptt", "4", "--max-steps",
                      "4", "--eval-batch-size", "2", "--test-batch-size", "1"],
                     cli_env(root), root)
    assert done.returncode == 0, done.stderr
    return run


Outcome = namedtuple("Outcome", "argv proc before after")


@pytest.fixture(scope="module")
def outcomes(root, corpus, trained):
    """{case name: Outcome} of every case, run four at a time."""
    env = cli_env(root)

    def prepare(i, case):
        folder = root / "cases" / f"{i:02d}"  # no case name in the path: messages echo it
        folder.mkdir(parents=True)
        for rel, text in case.files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(text)
        if any("{run}" in a for a in case.argv):
            shutil.copytree(trained, folder / "run")
        argv = [a.format(corpus=corpus, dir=folder, run=folder / "run") for a in case.argv]
        return folder, argv

    def attempt(folder, argv):
        before = snapshot(folder)
        proc = jax_rnnlm(argv, env, folder)
        return Outcome(argv, proc, before, snapshot(folder))

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = {case.name: pool.submit(attempt, *prepare(i, case))
                   for i, case in enumerate(CASES)}
        return {name: f.result() for name, f in futures.items()}


def check_refused(case, outcome):
    """Problems with how the command refused (empty list: the contract holds)."""
    proc, command = outcome.proc, case.argv[0]
    message = proc.stderr.removesuffix("\n")
    lines = message.split("\n")
    problems = []
    if proc.returncode != 2:
        problems.append(f"exit status {proc.returncode}, expected 2")
    if proc.stdout:
        problems.append(f"stdout not empty: {proc.stdout[:300]!r}")
    if "Traceback" in message:
        problems.append("stderr holds a Traceback")
    if not message.strip():
        problems.append("stderr is empty")
    elif len(lines) > 1 and not case.several_lines:
        problems.append(f"stderr has {len(lines)} lines, expected one")
    prefix = f"jax-rnnlm {command}: error: "
    if not lines[0].startswith(prefix):
        problems.append(f"the message does not start with {prefix!r}")
    if "unrecognized arguments" in message:
        problems.append("the command does not know a flag of this case")
    for pattern in case.expect:
        if not re.search(pattern, message, re.IGNORECASE):
            problems.append(f"the message does not match {pattern!r}")
    for text in case.forbid:
        if text in message:
            problems.append(f"the message mentions {text!r}")
    problems += [f"wrote to its directory: {c}" for c in changes(outcome.before, outcome.after)]
    return problems


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_with_one_line_before_any_work(case, outcomes):
    outcome = outcomes[case.name]
    problems = check_refused(case, outcome)
    assert not problems, ("\n".join(problems) + f"\n\njax-rnnlm {' '.join(outcome.argv)}"
                          f"\n--- stderr ---\n{outcome.proc.stderr[-3000:]}")


# --- stdout is strict JSON ---------------------------------------------------------------

def _reject_constant(name):
    raise ValueError(f"non-standard JSON constant {name}")


def strict_json_lines(stdout):
    """The records of stdout; a test failure on a line that is not strict JSON (NaN, Infinity)."""
    records = []
    for line in stdout.splitlines():
        if line.strip():
            try:
                records.append(json.loads(line, parse_constant=_reject_constant))
            except ValueError as e:
                pytest.fail(f"stdout line is not strict JSON ({e}): {line[:500]!r}")
    return records


def test_stdout_is_pure_json_when_stderr_is_a_terminal(root, corpus):
    folder = root / "pty"
    folder.mkdir()
    argv = ["train", "--data", corpus, "--workdir", folder / "run", "--embed-dim", "8",
            "--hidden-dim", "8", "--batch-size", "2", "--bptt", "4", "--max-steps", "4",
            "--eval-batch-size", "2", "--log-every", "1"]
    env = {**cli_env(root), "COLUMNS": "80", "TERM": "xterm"}
    master, slave = pty.openpty()
    terminal = bytearray()

    def drain():  # read the terminal until the child closes it, so it never blocks
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every writer has closed the slave side
                return
            if not chunk:
                return
            terminal.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "jax_rnnlm", *map(str, argv)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                                text=True, env=env, cwd=folder)
        os.close(slave)
        slave = None
        try:
            stdout, _ = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    finally:
        if slave is not None:
            os.close(slave)
        reader.join(timeout=10)  # the child has closed its side too: the read ends in EIO
        os.close(master)
    shown = terminal.decode(errors="replace")
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- terminal ---\n{shown[-3000:]}"
    records = strict_json_lines(stdout)
    assert len(stdout.splitlines()) == 1 and len(records) == 1, \
        f"stdout should be the one summary line, got:\n{stdout[-3000:]}"
    assert {"val_ppl", "test_ppl"} <= set(records[0]), records[0]
    assert shown.strip(), "no progress reached the terminal"


def test_eval_prints_strict_json(root, trained):
    before = snapshot(trained)
    done = jax_rnnlm(["eval", "--workdir", trained], cli_env(root), root)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(done.stdout.splitlines()) == 1, done.stdout
    [record] = strict_json_lines(done.stdout)
    assert {"ppl", "tokens"} <= set(record), record
    assert not changes(before, snapshot(trained))
