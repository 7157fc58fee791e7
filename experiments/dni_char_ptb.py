"""Synthetic gradients on character-level Penn Treebank (issue "Past the truncation window").

Runs of the same LSTM, the same number of epochs: truncated BPTT with T = 8,
T = 8 with synthetic gradients (DNI: a linear module at λ = 0.1, an mlp at λ = 0.5,
and a linear module taken in whole, λ = 1, regressed on the window's own gradient
only, γ = 0), and T = 40. Reported in bits per character
(log2 of the perplexity). Characters are the PTB files' own: every character is a
token, the space between words included, and each line end is the character
"\\n" (so the word-level <eos> of the Mikolov files is one newline here).

    python experiments/dni_char_ptb.py                      # all of them, in turn
    python experiments/dni_char_ptb.py --only dni_t8        # one of them
    python experiments/dni_char_ptb.py --epochs 1 --max-steps 50   # a smoke test

Each run writes its workdir under --root (outside the repository); running the same
command again resumes an interrupted run exactly.
"""
import argparse
import json
import math
import sys

from jax_rnnlm.cli import main as jax_rnnlm

MODEL = ["--data", "ptb", "--level", "char", "--cell", "lstm", "--num-layers", "1",
         "--embed-dim", "128", "--hidden-dim", "256", "--batch-size", "32",
         "--optimizer", "adam", "--lr", "0.002", "--clip", "1.0",
         "--eval-batch-size", "32", "--test-batch-size", "32"]
RUNS = {
    "plain_t8": ["--bptt", "8"],
    "dni_t8": ["--bptt", "8", "--synthetic-gradients", "linear", "--sg-scale", "0.1",
               "--sg-lr", "0.001"],
    "dni_t8_mlp": ["--bptt", "8", "--synthetic-gradients", "mlp", "--sg-scale", "0.5",
                   "--sg-lr", "0.001"],
    "dni_t8_g0": ["--bptt", "8", "--synthetic-gradients", "linear", "--sg-scale", "1",
                  "--sg-discount", "0", "--sg-lr", "0.001"],
    "plain_t40": ["--bptt", "40"],
}


def run_named(description, model, runs, *, root, epochs, extra=lambda summary: {}):
    """The command line the DNI experiments share: run each named set of flags (or
    ``--only`` some) as one ``jax-rnnlm train``, then print its final metrics as JSON,
    with ``extra(summary)`` added."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--root", default=root, help="workdirs go here")
    ap.add_argument("--epochs", type=int, default=epochs)
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--only", choices=sorted(runs), nargs="*")
    a = ap.parse_args()
    for name in a.only or runs:
        args = ["train", *model, *runs[name], "--epochs", str(a.epochs), "--log-every", "500",
                "--max-steps", str(a.max_steps), "--workdir", f"{a.root}/{name}"]
        print(f"{name}: jax-rnnlm {' '.join(args)}", file=sys.stderr, flush=True)
        code = jax_rnnlm(args)
        if code:
            return code
        with open(f"{a.root}/{name}/metrics.jsonl") as f:
            summary = [json.loads(line) for line in f][-1]
        print(json.dumps({"run": name, **extra(summary), **summary}), flush=True)
    return 0


def main():
    return run_named(__doc__.splitlines()[0], MODEL, RUNS, root="/work/runs/dni_char_ptb",
                     epochs=5, extra=lambda s: {"val_bpc": math.log2(s["val_ppl"]),
                                                "test_bpc": math.log2(s["test_ppl"])})


if __name__ == "__main__":
    sys.exit(main())
