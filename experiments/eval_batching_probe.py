"""A lever of the speed issue, measured and not kept: evaluation with the output layer
batched over K windows.

``step.eval_windows`` runs the output layer on each window's B·T rows inside the scan
over windows. Here the scan collects the hidden states only, and the output layer's
cross-entropy runs afterwards on K windows' rows at once (K·B·T rows per product).
Bench configs 2 and 3 at eval batch 10, W = 20 windows of the bench's T, random
params and tokens; interleaved, median of 7 rounds.

    python experiments/eval_batching_probe.py
"""
import functools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from jax_rnnlm import model, step
from jax_rnnlm.bench.report import cpu_name
from jax_rnnlm.config import ModelConfig

B, W = 10, 20
CONFIGS = [("2 lstm 2x200 T=20", 200, False, 20), ("3 lstm 2x650 tied", 650, True, 35)]


def batched_eval(params, cfg, carry, streams_BL, starts_W, bptt, k):
    """Like ``step.eval_windows`` with the output layer run on k windows at a time."""
    def body(c, start):
        x_BT, y_BT = step.window(streams_BL, start, bptt)
        h_NH, c = model.hidden_states(params, cfg, c, x_BT)
        return c, (h_NH, y_BT.reshape(-1))
    carry, (h_WNH, y_WN) = jax.lax.scan(body, carry, starts_W)
    n = starts_W.shape[0]
    ce = jax.lax.map(lambda hy: model.output_cross_entropy(params, cfg, *hy),
                     (h_WNH.reshape(n // k, -1, h_WNH.shape[-1]), y_WN.reshape(n // k, -1)))
    return carry, ce.reshape(n, -1).sum(-1)


def main():
    print(json.dumps({"cpu": cpu_name(), "jax": jax.__version__}), flush=True)
    for name, H, tied, T in CONFIGS:
        cfg = ModelConfig(vocab_size=10_000, embed_dim=H, hidden_dim=H, num_layers=2,
                          cell="lstm", tie_weights=tied)
        params = model.init_params(jax.random.key(0), cfg)
        streams = jax.random.randint(jax.random.key(1), (B, W * T + 1), 0, 10_000)
        args = (params, model.init_carry(cfg, B), streams, jnp.arange(W, dtype=jnp.int32) * T)
        fns = {"per window": jax.jit(functools.partial(step.eval_windows, cfg=cfg, bptt=T))}
        for k in (2, 5, 20):
            fns[f"K={k}"] = jax.jit(functools.partial(batched_eval, cfg=cfg, bptt=T, k=k))
        run = lambda f: f(args[0], carry=args[1], streams_BL=args[2], starts_W=args[3])
        ref = run(fns["per window"])[1]
        rel = {k: float(jnp.max(jnp.abs(run(f)[1] - ref) / ref)) for k, f in fns.items()}
        times = {k: [] for k in fns}
        for _ in range(7):
            for k, f in fns.items():
                t = time.perf_counter()
                jax.block_until_ready(run(f))
                times[k].append(time.perf_counter() - t)
        tok_s = {k: round(W * B * T / float(np.median(v))) for k, v in times.items()}
        print(json.dumps({"config": name, "eval_batch": B, "tokens_per_s": tok_s,
                          "over_per_window": {k: round(v / tok_s["per window"], 3)
                                              for k, v in tok_s.items()},
                          "max_rel_diff": rel}), flush=True)


if __name__ == "__main__":
    main()
