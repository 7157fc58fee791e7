"""The parallel-in-time cells on word-level PTB at the parameter count of Zaremba's small
LSTM (2x200, 4.65 M params): mingru 2x222, minlstm 2x218, rglru 2x218 (D = H), with the
ptb-lstm-small recipe (SGD, clip 0.25, T = 20, 13 epochs, lr x0.5 per epoch after 4).

    python experiments/ptb_parallel_cells.py sweep            # 1 epoch at each lr, each cell
    python experiments/ptb_parallel_cells.py full mingru 20   # the 13 epochs at one lr

Runs live in $JAX_RNNLM_RUNS (default /work/runs)/parallel_cells/<cell>-lr<lr>-ep<E>;
running the same command again resumes an interrupted run (or reports a finished one).
Each run prints its summary JSON line; the sweep prints one line per (cell, lr) with
the validation perplexity after the epoch.
"""
import argparse
import contextlib
import io
import json
import os
from pathlib import Path

from jax_rnnlm.cli import main as jax_rnnlm

WIDTHS = {"mingru": 222, "minlstm": 218, "rglru": 218, "lstm": 200}
SWEEP_LRS = (5.0, 10.0, 20.0, 40.0)


def run(cell, lr, epochs):
    """Train (or resume) one run; returns its summary record."""
    root = Path(os.environ.get("JAX_RNNLM_RUNS", "/work/runs")) / "parallel_cells"
    workdir = root / f"{cell}-lr{lr:g}-ep{epochs}"
    h = str(WIDTHS[cell])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = jax_rnnlm(["train", "--preset", "ptb-lstm-small", "--cell", cell,
                          "--embed-dim", h, "--hidden-dim", h, "--lr", str(lr),
                          "--epochs", str(epochs), "--workdir", str(workdir)])
    if code:
        raise SystemExit(code)
    return {"cell": cell, "lr": lr, "epochs": epochs, "workdir": str(workdir),
            **json.loads(out.getvalue().splitlines()[-1])}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    sw = sub.add_parser("sweep", help="one epoch at each learning rate")
    sw.add_argument("--cells", default="mingru,minlstm,rglru")
    sw.add_argument("--lrs", default=",".join(f"{lr:g}" for lr in SWEEP_LRS))
    full = sub.add_parser("full", help="the 13 epochs at one learning rate")
    full.add_argument("cell", choices=sorted(WIDTHS))
    full.add_argument("lr", type=float)
    a = p.parse_args()
    if a.what == "sweep":
        for cell in a.cells.split(","):
            for lr in map(float, a.lrs.split(",")):
                print(json.dumps(run(cell, lr, 1)), flush=True)
    else:
        print(json.dumps(run(a.cell, a.lr, 13)), flush=True)


if __name__ == "__main__":
    main()
