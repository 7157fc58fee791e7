"""Output layer at large vocabularies: train tokens/s and peak memory of the full
softmax and the adaptive softmax, same model (LSTM 2x200, B = 20, T = 35, SGD),
V = 10k, 50k, 250k. Token ids are drawn from a Zipf (1/rank) distribution over V,
as word ranks of natural text are, so the tail clusters see realistic shares.

Each (V, softmax) runs in a fresh process (its peak resident memory is its own):
one compiled call of W windows to compile, then --calls timed calls.

    python experiments/softmax_bench.py > softmax_bench.jsonl
"""
import argparse
import json
import subprocess
import sys

CUTOFFS = {10_000: (2000, 5000), 50_000: (2000, 10_000), 250_000: (2000, 10_000, 50_000)}

CHILD = """
import json, resource, sys, time
import jax, jax.numpy as jnp, numpy as np
from jax_rnnlm import optim, step
from jax_rnnlm.config import ModelConfig
V, softmax, cutoffs, calls, W = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), \\
    int(sys.argv[4]), int(sys.argv[5])
B, T = 20, 35
cfg = ModelConfig(vocab_size=V, embed_dim=200, hidden_dim=200, num_layers=2, softmax=softmax,
                  cutoffs=tuple(cutoffs) if softmax == "adaptive" else (), div_value=4.0)
tx = optim.make_optimizer("sgd", 20.0, 0.25)
state = step.init_state(jax.random.key(0), cfg, tx, B)
weights = 1.0 / np.arange(1, V + 1)
cdf = np.cumsum(weights) / weights.sum()
ids = np.searchsorted(cdf, np.random.default_rng(0).random(B * (W * T + 1)), side="right")
streams = jnp.asarray(np.minimum(ids, V - 1).reshape(B, -1), jnp.int32)
starts = jnp.arange(W, dtype=jnp.int32) * T
run = step.jit_train_windows(cfg, tx, T)
state, m = run(state, streams, starts)
m["loss"].block_until_ready()
t = time.perf_counter()
for _ in range(calls):
    state, m = run(state, streams, starts)
m["loss"].block_until_ready()
dt = time.perf_counter() - t
print(json.dumps({"V": V, "softmax": softmax, "cutoffs": cutoffs if softmax == "adaptive"
                  else None, "tokens_per_s": calls * W * B * T / dt,
                  "loss": float(m["loss"][-1]),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocab", type=int, nargs="+", default=sorted(CUTOFFS))
    p.add_argument("--calls", type=int, default=3)
    p.add_argument("--windows", type=int, default=2, help="W windows per compiled call")
    args = p.parse_args(argv)
    for V in args.vocab:
        cutoffs = CUTOFFS.get(V) or (V // 5, V // 2)
        for softmax in ("full", "adaptive"):
            out = subprocess.run([sys.executable, "-c", CHILD, str(V), softmax,
                                  json.dumps(cutoffs), str(args.calls), str(args.windows)],
                                 capture_output=True, text=True)
            if out.returncode:
                sys.exit(out.stderr)
            print(out.stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
