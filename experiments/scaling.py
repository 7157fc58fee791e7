"""Data-parallel throughput vs device count on simulated CPU devices.

Strong scaling: one global batch of B streams is split over 1, 2, 4, 8 devices,
with the sharded-jit step (parallel.prepare) and the pmap step. The devices are
simulated (``--xla_force_host_platform_device_count``) and share this machine's
cores, so the table shows that the parallel steps compute the same losses and
what the split and the gradient all-reduce cost, not a real speed-up: on 2
cores, n simulated devices have at most 2 cores of compute between them. On n
real GPUs or TPU cores the per-device work is B/n streams on its own chip.

    python experiments/scaling.py                      # tiny LSTM, B=32, up to 8 devices
    python experiments/scaling.py --hidden 256 --calls 5
"""
import argparse
import os
import sys
import time

MAX_DEVICES = 8
if "jax" not in sys.modules:  # the simulated devices must be set before JAX starts
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={MAX_DEVICES}")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jax_rnnlm import data, optim, parallel, step  # noqa: E402
from jax_rnnlm.config import ModelConfig  # noqa: E402


def timed(run, state, streams, starts, calls):
    """(losses [W] of the first call, fastest of ``calls`` calls in s) after two warm-up calls.

    The fastest call, not the mean: other jobs share the cores, and they only ever
    slow a call down.
    """
    state, metrics = run(state, streams, starts)  # compiles
    first = np.asarray(metrics["loss"])
    # pmap compiles again for its own (device-placed) outputs; jit, given placed inputs, not.
    state, metrics = run(state, streams, starts)
    seconds = []
    for _ in range(calls):
        t0 = time.perf_counter()
        state, metrics = run(state, streams, starts)
        jax.block_until_ready(metrics)
        seconds.append(time.perf_counter() - t0)
    return first, min(seconds)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=32, help="global B (default 32)")
    ap.add_argument("--bptt", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=128, help="D = H (default 128)")
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--windows-per-call", type=int, default=10)
    ap.add_argument("--calls", type=int, default=5, help="timed calls per setting (fastest counts)")
    args = ap.parse_args(argv)

    B, T, W = args.batch_size, args.bptt, args.windows_per_call
    mcfg = ModelConfig(vocab_size=args.vocab, embed_dim=args.hidden, hidden_dim=args.hidden,
                       cell="lstm")
    tx = optim.make_optimizer("sgd", 1.0, 0.25)
    fresh = lambda: step.init_state(jax.random.key(0), mcfg, tx, B)
    ids = np.random.default_rng(0).integers(0, args.vocab, B * (W * T + 1), dtype=np.int32)
    streams = data.train_streams(ids, B, T)
    starts = jnp.arange(W, dtype=jnp.int32) * T
    tokens = W * B * T  # per call
    counts = [n for n in (1, 2, 4, 8) if n <= jax.device_count() and B % n == 0]

    print(f"{jax.device_count()} simulated {jax.default_backend()} devices on "
          f"{os.cpu_count()} cores; LSTM V={args.vocab} D=H={args.hidden}, global B={B}, "
          f"T={T}, {W} windows per call, fastest of {args.calls} calls\n")
    print("| devices | streams per device | sharded jit tokens/s | pmap tokens/s "
          "| max rel. loss diff vs 1 device (jit / pmap) |")
    print("|---|---|---|---|---|")
    reference = None
    for n in counts:
        state, place, run_windows = parallel.prepare(fresh(), B, mcfg, tx, n)
        run = run_windows(T)
        placed = place(streams)
        jit_losses, jit_s = timed(run, state, placed, starts, args.calls)
        pstate = parallel.pmap_state(fresh(), n)
        prun = parallel.pmap_train_windows(mcfg, tx, T, devices=jax.devices()[:n])
        pmap_losses, pmap_s = timed(prun, pstate, parallel.split_devices(streams, n),
                                       starts, args.calls)
        reference = jit_losses if reference is None else reference
        diff = [float(np.max(np.abs(x - reference) / np.abs(reference)))
                for x in (jit_losses, pmap_losses)]
        print(f"| {n} | {B // n} | {tokens / jit_s:,.0f} | {tokens / pmap_s:,.0f} "
              f"| {diff[0]:.1e} / {diff[1]:.1e} |", flush=True)


if __name__ == "__main__":
    main()
