"""Train speed of the cells linear in their state against the LSTM, at matched parameter
count, in one interleaved run on PTB (B = 20, V = 10,000, SGD, W windows per call).

For each reference LSTM (2x200 at T = 20, Zaremba small; 2x650 at T = 35, medium) every
new cell gets the width H (= D) whose total parameter count is closest to the LSTM's.
Each model is timed as the library trains it (``step.jit_train_windows``), rounds
interleaved, median per window; beside it the recurrent stack alone (embedding and
layers, forward and backward) gives the recurrence's share of the window. Then the
parallel and the sequential time loop of each new cell at T = 35, 140, 560.

    python experiments/parallel_cells_speed.py --json experiments/bench/parallel_cells.json
"""
import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jax_rnnlm import cells, data, model, optim, step
from jax_rnnlm.bench import report
from jax_rnnlm.config import ModelConfig

V, B = 10_000, 20
NEW = [name for name, c in cells.CELLS.items() if c.parallel]


def count(cfg):
    shapes = jax.eval_shape(lambda: model.init_params(jax.random.key(0), cfg))
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))


def matched(cell, reference, **kw):
    """The config of ``cell`` (D = H) whose parameter count is closest to ``reference``'s."""
    def make(h):
        return ModelConfig(vocab_size=V, embed_dim=h, hidden_dim=h,
                           num_layers=reference.num_layers, cell=cell, **kw)
    target, lo, hi = count(reference), 1, 4096
    while hi - lo > 1:  # the count grows with h: the last h at or under the target
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(make(mid)) <= target else (lo, mid)
    return min((make(lo), make(hi)), key=lambda c: abs(count(c) - target))


def timers(cfg, bptt, streams, windows):
    """(seconds of one train call of W windows, seconds of the recurrent stack's forward
    and backward over the same tokens), each compiled and warmed up."""
    tx = optim.make_optimizer("sgd", 1.0, 0.25)
    state = step.init_state(jax.random.key(0), cfg, tx, B)
    run = step.jit_train_windows(cfg, tx, bptt)
    cols = jnp.asarray(streams[:, : windows * bptt + 1])
    starts = jnp.arange(windows, dtype=jnp.int32) * bptt
    tokens = jnp.asarray(streams[:, :bptt])
    stack = jax.jit(jax.grad(lambda p: sum(
        jnp.sum(leaf) for leaf in jax.tree.leaves(model.recurrent_stack(
            p, cfg, model.init_carry(cfg, B), tokens)[1]))))
    holder = [state]

    def train_call():
        holder[0], metrics = run(holder[0], cols, starts)
        jax.block_until_ready(metrics["loss"])

    def stack_call():
        jax.block_until_ready(stack(holder[0].params))
    for f in (train_call, stack_call):
        f()
    return train_call, stack_call


def timed(f, n):
    t = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t) / n


def compare(configs, bptt, streams, windows, rounds):
    """{name: {"train_ms_per_window", "stack_ms", "tokens_per_s"}}: medians over rounds,
    the models interleaved within each round."""
    calls = {name: timers(cfg, bptt, streams, windows) for name, cfg in configs.items()}
    samples = {name: ([], []) for name in configs}
    for _ in range(rounds):
        for name, (train_call, stack_call) in calls.items():
            samples[name][0].append(timed(train_call, 2) / windows)
            samples[name][1].append(timed(stack_call, 2 * windows))
    out = {}
    for name, (train_s, stack_s) in samples.items():
        per_window = statistics.median(train_s)
        out[name] = {"params": count(configs[name]), "H": configs[name].hidden_dim,
                     "train_ms_per_window": 1e3 * per_window,
                     "tokens_per_s": B * bptt / per_window,
                     "recurrence_share": min(1.0, statistics.median(stack_s) / per_window)}
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--windows", type=int, default=10)
    p.add_argument("--sizes", default="200,650",
                   help="reference LSTM widths ('' for none: the time-loop sweep alone)")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--json", help="write the results here")
    a = p.parse_args()
    train = data.load_corpus("ptb").train
    results = {"machine": report.machine(), "matched": [], "time_loop": []}
    for size, bptt in [(int(s), 20 if int(s) < 400 else 35) for s in a.sizes.split(",") if s]:
        streams = data.batchify(train, B)[:, : 3 * 560 + 1]
        for dtype in a.dtypes.split(","):
            ref = ModelConfig(vocab_size=V, embed_dim=size, hidden_dim=size, num_layers=2,
                              cell="lstm", dtype=dtype)
            configs = {"lstm": ref, **{c: matched(c, ref, dtype=dtype) for c in NEW}}
            res = compare(configs, bptt, streams, a.windows, a.rounds)
            for name, r in res.items():
                r["x_lstm"] = r["tokens_per_s"] / res["lstm"]["tokens_per_s"]
            results["matched"].append({"reference": f"lstm 2x{size}", "bptt": bptt,
                                       "dtype": dtype, "models": res})
            print(json.dumps(results["matched"][-1]), flush=True)
    ref = ModelConfig(vocab_size=V, embed_dim=200, hidden_dim=200, num_layers=2, cell="lstm")
    for bptt in (35, 140, 560):
        streams = data.batchify(train, B)[:, : 2 * bptt + 1]
        configs = {f"{c} {loop}": matched(c, ref, time_loop=loop) for c in NEW
                   for loop in ("parallel", "scan")}
        res = compare(configs, bptt, streams, 2, a.rounds)
        results["time_loop"].append({"bptt": bptt, "models": res})
        print(json.dumps(results["time_loop"][-1]), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
