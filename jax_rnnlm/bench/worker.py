"""The worker process of the benchmark: it builds the one peer it is sent, then
answers timing requests (pickles on stdin/stdout; whatever the frameworks print
goes to stderr). The convergence check runs as a worker too, in a fresh process.
"""
import os
import pickle
import sys
import time
import traceback

import jax
import jax.numpy as jnp

from jax_rnnlm import data, optim, step
from jax_rnnlm.bench import harness, peers


def serve():
    """Worker process: build the peer it is sent, then answer timing requests.

    Requests and replies are pickles on stdin/stdout; anything the frameworks
    print goes to stderr.
    """
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    inp = sys.stdin.buffer

    def send(msg):
        pickle.dump(msg, out)
        out.flush()

    peer, spec, corpus, opts = pickle.load(inp)
    if opts["threads"] < (os.cpu_count() or 1):
        os.sched_setaffinity(0, range(opts["threads"]))  # XLA sizes its pool by affinity
    try:
        impl = PEER_CLASSES[peer](peer, spec, corpus, opts)
        send(("ok", impl.info))
        while True:
            cmd, *args = pickle.load(inp)
            if cmd == "stop":
                break
            send(("ok", getattr(impl, cmd)(*args)))
    except Exception as e:  # report, so the coordinator can say which peer failed
        send(("error", f"{peer}: {type(e).__name__}: {e}\n{traceback.format_exc()}"))


def convergence(corpus, windows, opts):
    """Val perplexity after the same ``windows`` train steps of config 2: fp32 and
    bf16 from seed 0, and fp32 from seed 1 as the yardstick of run-to-run spread."""
    spec = harness.CONFIGS[1]
    out = {"config": spec.name, "windows": windows, "lr": 20.0, "clip": 0.25}
    for name, dtype, seed in (("float32", "float32", 0), ("bfloat16", "bfloat16", 0),
                              ("float32_seed1", "float32", 1)):
        out[name] = _train_and_validate(spec, corpus, windows, dtype, seed)
    fp32 = out["float32"]["val_ppl"]
    out["relative_difference"] = out["bfloat16"]["val_ppl"] / fp32 - 1
    out["seed_spread"] = out["float32_seed1"]["val_ppl"] / fp32 - 1
    return out


def _train_and_validate(spec, corpus, windows, dtype, seed):
    """One convergence run: ``windows`` SGD steps (lr 20, clip 0.25), then val perplexity."""
    mcfg = spec.model_config(corpus["vocab"], dtype)
    tx = optim.make_optimizer("sgd", 20.0, 0.25)
    state = step.init_state(jax.random.key(seed), mcfg, tx, spec.batch)
    streams = data.train_streams(corpus["train"], spec.batch, spec.bptt)
    n = data.num_windows(streams, spec.bptt, full_only=True)
    dev = jnp.asarray(streams)
    run = step.jit_train_windows(mcfg, tx, spec.bptt)
    t = time.perf_counter()
    for i in range(0, windows, 10):
        idx = (i + jnp.arange(min(10, windows - i), dtype=jnp.int32)) % n
        state, metrics = run(state, dev, idx * spec.bptt)
    loss = float(metrics["loss"][-1])
    ppl, _ = step.evaluate(state.params, mcfg, corpus["valid"], batch_size=10, bptt=spec.bptt)
    return {"val_ppl": ppl, "last_train_loss": loss, "wall_s": time.perf_counter() - t}


class Convergence:
    """The convergence runs as a worker, so they get a fresh process like the peers."""

    def __init__(self, peer, spec, corpus, opts):
        self.info = convergence(corpus, opts["convergence"], opts)


PEER_CLASSES = {"jax_rnnlm": peers.JaxPeer, "jax_rnnlm-bf16": peers.JaxPeer,
                "flax": peers.FlaxPeer, "torch": peers.TorchPeer, "roofline": peers.Roofline,
                "convergence": Convergence}
