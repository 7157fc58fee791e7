"""Tiny Shakespeare, character level: minGRU and minLSTM against the paper's test losses.

The paper: Feng et al. 2024 ("Were RNNs All We Needed?", arXiv 2410.01201, sec. 4.2:
minGRU 1.548, minLSTM 1.555, Mamba 1.575, Transformer 1.547); LSTMs run beside them.

The paper's setting (its appendix C, nanoGPT's shakespeare_char): 3 layers, width 384,
dropout 0.2, AdamW lr 1e-3, clip 0.25, batch 64, context 256 (nanoGPT's), 5,000 steps,
best at 575 (minGRU) and 625 (minLSTM) steps; "test" is nanoGPT's last 10% of the text.
Here: the same layers, width, dropout, lr, clip, batch and window (B = 64, T = 256, so an
epoch of the 1,003,854 train characters is 61 windows and the 10 epochs are 610 steps),
Adam at a constant lr, truncated BPTT with the state carried from window to window. Not
here: the paper's block around the recurrence (a width-4 causal convolution, an MLP,
norms, residuals, the 2x expansion with its down-projection), and its evaluation on
separate 256-character windows (ours scores the split as one stream per row, carry
flowing). This corpus's valid + test (5% + 5%) are exactly nanoGPT's 10%; the loss on
that 10% is the token-weighted mean of the two.

    python experiments/shakespeare_parallel_cells.py                 # every cell below
    python experiments/shakespeare_parallel_cells.py mingru lstm-176  # some of them

Runs live in $JAX_RNNLM_RUNS (default /work/runs)/shakespeare/<name>; running the same
command again resumes an interrupted run. Each run prints one JSON line: the run's
summary, then the best-validation checkpoint's loss (nats per character) on valid, test
and the two together.
"""
import argparse
import contextlib
import io
import json
import math
import os
from pathlib import Path

from jax_rnnlm.cli import main as jax_rnnlm

# name -> (cell, H): the paper's width for its cells (mingru 0.94 M params, minlstm
# 1.38 M); LSTMs at minGRU's parameter count (3x176: 0.93 M) and at its width (3.59 M);
# minGRU at the 2x expansion the paper gives its recurrence (3x768: 3.03 M).
RUNS = {"mingru": ("mingru", 384), "minlstm": ("minlstm", 384),
        "lstm-176": ("lstm", 176), "lstm-384": ("lstm", 384), "mingru-768": ("mingru", 768)}
SETTING = ["--data", "tinyshakespeare", "--num-layers", "3", "--embed-dim", "384",
           "--dropout", "0.2", "--optimizer", "adam", "--lr", "1e-3", "--clip", "0.25",
           "--batch-size", "64", "--bptt", "256", "--eval-batch-size", "64",
           "--test-batch-size", "64", "--windows-per-call", "4", "--epochs", "10",
           "--log-every", "61"]


def cli_json(argv):
    """The last stdout line of a jax-rnnlm command, as JSON."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = jax_rnnlm(argv)
    if code:
        raise SystemExit(code)
    return json.loads(out.getvalue().splitlines()[-1])


def run(name):
    cell, h = RUNS[name]
    workdir = Path(os.environ.get("JAX_RNNLM_RUNS", "/work/runs")) / "shakespeare" / name
    summary = cli_json(["train", *SETTING, "--cell", cell, "--hidden-dim", str(h),
                        "--workdir", str(workdir)])
    best = {split: cli_json(["eval", "--workdir", str(workdir), "--checkpoint", "best",
                             "--split", split, "--batch-size", "64", "--bptt", "256"])
            for split in ("valid", "test")}
    loss = {split: math.log(r["ppl"]) for split, r in best.items()}
    n = {split: r["tokens"] for split, r in best.items()}
    last10 = sum(loss[s] * n[s] for s in loss) / sum(n.values())
    return {"name": name, "cell": cell, "hidden": h, "workdir": str(workdir), **summary,
            "best_valid_loss": loss["valid"], "best_test_loss": loss["test"],
            "best_last10pct_loss": last10}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help=f"runs among {', '.join(RUNS)} (default: all)")
    names = p.parse_args().names or list(RUNS)
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        p.error(f"unknown run(s) {', '.join(unknown)}; choose among {', '.join(RUNS)}")
    for name in names:
        print(json.dumps(run(name)), flush=True)


if __name__ == "__main__":
    main()
