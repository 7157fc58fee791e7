"""What users run, timed: `jax-rnnlm train` against the bench's inner loop and a plain
PyTorch script of the same model, on PTB, in one interleaved run.

Each of the three is run for two step counts (default 100 and 400 windows); the
difference of the two wall times over the difference of the steps is the cost of
one step in the loop, with start-up, compiling, data loading and the final
evaluation cancelled out. `jax-rnnlm train` and the PyTorch script run as
subprocesses (the whole command a user types); the bench's inner loop is
``step.jit_train_windows`` called W windows at a time in this process, as
``jax-rnnlm bench`` times it. Rounds are interleaved, their order rotating, and
each figure is the median over rounds.

    python experiments/cli_overhead.py                       # tanh RNN 1x200, B=20, T=35
    python experiments/cli_overhead.py --cell lstm --layers 2 --bptt 20          # config 2
    python experiments/cli_overhead.py --cell lstm --layers 2 --hidden 650 --dropout 0.5 --tied
    python experiments/cli_overhead.py --cell gru                                 # config 4
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp

from jax_rnnlm import data, optim, step
from jax_rnnlm.bench import harness, peers, report
from jax_rnnlm.config import ModelConfig

LR, CLIP = 1.0, 0.25


def model_flags(a):
    return ["--cell", a.cell, "--num-layers", str(a.layers), "--embed-dim", str(a.hidden),
            "--hidden-dim", str(a.hidden), "--batch-size", str(a.batch), "--bptt", str(a.bptt),
            "--dtype", a.dtype, "--dropout", str(a.dropout),
            "--tie-weights" if a.tied else "--no-tie-weights"]


def cli_seconds(a, steps, workdir):
    """Wall seconds of one `jax-rnnlm train --max-steps steps` from a fresh workdir."""
    cmd = [sys.executable, "-m", "jax_rnnlm", "train", "--data", "ptb", "--workdir", workdir,
           "--resume", "fresh", *model_flags(a), "--optimizer", "sgd", "--lr", str(LR),
           "--clip", str(CLIP), "--max-steps", str(steps), "--save-every", "0",
           "--windows-per-call", str(a.windows), "--log-every", "100"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def torch_seconds(a, steps):
    """Wall seconds of the plain PyTorch script (this file, --torch-steps) for ``steps``."""
    cmd = [sys.executable, __file__, "--torch-steps", str(steps), *sys.argv[1:]]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def torch_train(a, steps):
    """A plain PyTorch training script of the same model: SGD, clipping, detached carry.
    (Its start-up, like `jax-rnnlm train`'s and its final evaluation, cancels out.)"""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    torch.set_num_threads(os.cpu_count())
    corpus = data.load_corpus("ptb")
    V, H = len(corpus.vocab), a.hidden
    spec = harness.Spec("cli", a.cell, a.layers, H, bptt=a.bptt, batch=a.batch,
                        dropout=a.dropout, tied=a.tied)
    m = peers.torch_lm(spec, V)  # the bench's PyTorch model
    opt = torch.optim.SGD(m.parameters(), lr=LR)
    ids = torch.from_numpy(data.train_streams(corpus.train, a.batch, a.bptt).astype("int64"))
    zero = lambda b: (torch.zeros(a.layers, b, H),) * (2 if a.cell == "lstm" else 1)
    detach = lambda h: tuple(x.detach() for x in h) if isinstance(h, tuple) else h.detach()
    h = zero(a.batch) if a.cell == "lstm" else zero(a.batch)[0]
    n_windows = (ids.shape[1] - 1) // a.bptt
    for k in range(steps):
        s = (k % n_windows) * a.bptt
        x, y = ids[:, s:s + a.bptt], ids[:, s + 1:s + a.bptt + 1]
        h = detach(h)
        opt.zero_grad()
        logits, h = m(x, h)
        F.cross_entropy(logits.reshape(-1, V), y.reshape(-1)).backward()
        nn.utils.clip_grad_norm_(m.parameters(), CLIP)
        opt.step()


class InnerLoop:
    """The bench's inner loop: the compiled W-window step, state donated, data on device."""

    def __init__(self, a):
        corpus = data.load_corpus("ptb")
        cfg = ModelConfig(vocab_size=len(corpus.vocab), embed_dim=a.hidden, hidden_dim=a.hidden,
                          num_layers=a.layers, cell=a.cell, dtype=a.dtype,
                          dropout=a.dropout, tie_weights=a.tied)
        tx = optim.make_optimizer("sgd", LR, CLIP)
        self.state = step.init_state(jax.random.key(0), cfg, tx, a.batch)
        self.streams = jnp.asarray(data.train_streams(corpus.train, a.batch, a.bptt))
        self.run = step.jit_train_windows(cfg, tx, a.bptt)
        self.w, self.bptt = a.windows, a.bptt
        self.n = (self.streams.shape[1] - 1) // a.bptt
        self.k = 0
        self.seconds(2 * a.windows)  # compile and warm up

    def seconds(self, steps):
        t = time.perf_counter()
        for _ in range(steps // self.w):
            starts = (jnp.arange(self.k, self.k + self.w, dtype=jnp.int32) % self.n) * self.bptt
            self.state, metrics = self.run(self.state, self.streams, starts)
            jax.block_until_ready(metrics)
            self.k += self.w
        return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cell", default="rnn")
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=200, help="D = H")
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--bptt", type=int, default=35)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--dropout", type=float, default=0.0, help="as the bench's config 3: 0.5")
    ap.add_argument("--tied", action="store_true", help="output weight = embedding")
    ap.add_argument("--windows", type=int, default=10, help="W, windows per compiled call")
    ap.add_argument("--steps", type=int, nargs=2, default=(100, 400))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--torch-steps", type=int, help=argparse.SUPPRESS)  # the torch worker
    a = ap.parse_args()
    if a.torch_steps is not None:
        return torch_train(a, a.torch_steps)

    lo, hi = a.steps
    tokens = a.batch * a.bptt
    inner = InnerLoop(a)
    runners = {"inner loop": lambda s, d: inner.seconds(s),
               "jax-rnnlm train": lambda s, d: cli_seconds(a, s, d)}
    if not a.no_torch:
        runners["pytorch script"] = lambda s, d: torch_seconds(a, s)
    per_step = {name: [] for name in runners}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            names = list(runners)[r % len(runners):] + list(runners)[:r % len(runners)]
            for name in names:
                t_lo = runners[name](lo, f"{tmp}/{r}a")
                t_hi = runners[name](hi, f"{tmp}/{r}b")
                per_step[name].append((t_hi - t_lo) / (hi - lo))
                print(f"round {r + 1} {name}: {(t_hi - t_lo) / (hi - lo) * 1e3:.1f} ms/step",
                      file=sys.stderr, flush=True)
    med = {name: statistics.median(v) for name, v in per_step.items()}
    out = {"config": vars(a), "cpu": report.cpu_name(),
           "ms_per_step": {k: v * 1e3 for k, v in med.items()},
           "tokens_per_s": {k: tokens / v for k, v in med.items()},
           "samples_ms": {k: [x * 1e3 for x in v] for k, v in per_step.items()},
           "cli_over_inner_loop": med["jax-rnnlm train"] / med["inner loop"] - 1}
    if "pytorch script" in med:
        out["cli_x_pytorch"] = med["pytorch script"] / med["jax-rnnlm train"]
    print(json.dumps(out, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
