"""Time per token of truncated BPTT with and without synthetic gradients, interleaved in
one process (the char-level PTB LSTM of experiments/dni_char_ptb.py by default).

    python experiments/dni_overhead.py [--bptt 8] [--rounds 5]
"""
import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp

from jax_rnnlm import data, optim, step
from jax_rnnlm.config import DNIConfig, ModelConfig


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bptt", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--windows", type=int, default=50, help="windows per timed call")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    corpus = data.load_corpus("ptb", "char")
    cfg = ModelConfig(vocab_size=len(corpus.vocab), embed_dim=128, hidden_dim=a.hidden,
                      cell="lstm")
    tx = optim.make_optimizer("adam", 0.002, 1.0)
    streams = jnp.asarray(data.train_streams(corpus.train, a.batch, a.bptt))
    variants = {"plain": None, "dni linear": DNIConfig("linear", 0.1, 1e-3),
                "dni mlp": DNIConfig("mlp", 0.5, 1e-3),
                "dni linear λ1 γ0": DNIConfig("linear", 1.0, 1e-3, discount=0.0)}
    runs = {}
    for name, dni_cfg in variants.items():
        state = step.init_state(jax.random.key(0), cfg, tx, a.batch, dni_cfg)
        runs[name] = [state, step.jit_train_windows(cfg, tx, a.bptt, dni_cfg)]
    starts = jnp.arange(a.windows, dtype=jnp.int32) * a.bptt
    seconds = {name: [] for name in runs}
    for r in range(a.rounds + 1):  # round 0 compiles
        for name, run in runs.items():
            t = time.perf_counter()
            run[0], metrics = run[1](run[0], streams, starts)
            jax.block_until_ready(metrics)
            if r:
                seconds[name].append(time.perf_counter() - t)
    tokens = a.windows * a.batch * a.bptt
    rate = {name: tokens / statistics.median(s) for name, s in seconds.items()}
    print(json.dumps({"tokens_per_s": rate,
                      "extra_time_per_token": {n: rate["plain"] / r - 1 for n, r in rate.items()},
                      "config": vars(a)}, indent=1))


if __name__ == "__main__":
    main()
