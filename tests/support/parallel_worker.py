"""The multi-device side of test_parallel.py, run as a subprocess: there JAX can still
start with several simulated CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count=N``)
or as one of several processes. Writes what it computed to ``OUT/results.npz`` and
checkpoints to ``OUT/run``; the one-device references are computed by the test itself.

    python tests/support/parallel_worker.py devices OUT
    python tests/support/parallel_worker.py process OUT COORDINATOR NUM_PROCESSES PROCESS_ID
"""
import sys
from pathlib import Path

import jax
import numpy as np

from jax_rnnlm import optim, step
from jax_rnnlm.config import ModelConfig

# The run both sides compute: a tiny 2-layer LSTM, W windows of T steps over B streams.
B, T, W, V = 8, 5, 4, 20
DROPOUT = 0.2


def model_config(dropout=DROPOUT):
    return ModelConfig(vocab_size=V, embed_dim=8, hidden_dim=8, num_layers=2, cell="lstm",
                       init_scale=0.3, dropout=dropout)


def optimizer():
    return optim.make_optimizer("sgd", 0.5, 1.0)


def fresh_state(dropout=DROPOUT):
    return step.init_state(jax.random.key(0), model_config(dropout), optimizer(), B)


def corpus_ids():
    """[M] ids with enough structure that the loss moves; 2W windows per stream and spare."""
    n = np.arange(B * (2 * W * T + 3))
    return ((n * 7 + n // 3) % V).astype(np.int32)


def starts(first_window=0):
    """Start offsets [W] of W consecutive windows."""
    return np.arange(first_window, first_window + W, dtype=np.int32) * T


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def packed(prefix, tree):
    return {f"{prefix}_{i}": x for i, x in enumerate(leaves(tree))}


def unpacked(results, prefix):
    n = sum(k.startswith(prefix + "_") and k[len(prefix) + 1:].isdigit() for k in results)
    return [results[f"{prefix}_{i}"] for i in range(n)]


def save(workdir, state):
    from jax_rnnlm import checkpoint
    ckpt = checkpoint.Checkpoints(workdir)
    ckpt.save(state, {})
    ckpt.close()


def restore(workdir, template):
    from jax_rnnlm import checkpoint
    ckpt = checkpoint.Checkpoints(workdir)
    state, _ = ckpt.restore(template)
    ckpt.close()
    return state


def devices_main(out):
    """Sharded jit run (with dropout), pmap run (without), sharded evaluation, checkpoint."""
    from jax_rnnlm import data, parallel
    n = jax.device_count()
    streams = data.train_streams(corpus_ids(), B, T)

    state, place, run_windows = parallel.prepare(fresh_state(), B, model_config(), optimizer(), n)
    run = run_windows(T)
    placed = place(streams)
    state, metrics = run(state, placed, starts())
    carry = jax.tree.leaves(state.carry)[0]
    results = dict(num_devices=n, sharded_loss=metrics["loss"],
                   **packed("sharded", state.params), **packed("sharded_carry", state.carry),
                   carry_spec=str(carry.sharding.spec), carry_shards=len(carry.addressable_shards))
    save(out / "run", state)

    pstate, pmetrics = parallel.pmap_train_windows(model_config(0.0), optimizer(), T)(
        parallel.pmap_state(fresh_state(0.0), n), parallel.split_devices(streams, n), starts())
    pstate = parallel.unpmap_state(pstate)
    results.update(pmap_loss=pmetrics["loss"], **packed("pmap", pstate.params),
                   **packed("pmap_carry", pstate.carry))

    for b in (n, 1):  # split over the devices, and a single stream (replicated)
        results[f"ppl_b{b}"] = parallel.sharded_evaluate(state.params, model_config(),
                                                         corpus_ids(), batch_size=b, bptt=T)[0]
    np.savez(out / "results.npz", **results)


def process_main(out, coordinator, num_processes, process_id):
    """One of several processes: each loads its own rows, trains, saves, restores onto the
    mesh (as a resumed run does), evaluates."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    from jax.experimental import multihost_utils
    from jax_rnnlm import parallel
    parallel.initialize_distributed(coordinator, num_processes, process_id)
    mesh = parallel.make_mesh()
    state = parallel.shard_state(fresh_state(), mesh)
    streams = parallel.process_streams(corpus_ids(), B, T, mesh)
    state, metrics = parallel.sharded_train_windows(model_config(), optimizer(), T, mesh)(
        state, streams, starts())
    save(out / "run", state)  # every process writes its own shards; orbax coordinates
    resumed = restore(out / "run", parallel.shard_state(fresh_state(), mesh))
    carry = multihost_utils.process_allgather(state.carry, tiled=True)
    ppl = parallel.sharded_evaluate(state.params, model_config(), corpus_ids(), batch_size=B,
                                    bptt=T)[0]
    rows = sorted({s.index[0].start for s in streams.addressable_shards})
    if parallel.is_main_process():
        np.savez(out / "results.npz", loss=metrics["loss"], ppl=ppl, devices=jax.device_count(),
                 processes=jax.process_count(), local_rows=rows,
                 **packed("params", state.params), **packed("carry", carry),
                 **packed("resumed", resumed.params), resumed_carry_spec=str(
                     jax.tree.leaves(resumed.carry)[0].sharding.spec))


if __name__ == "__main__":  # strict promotion comes from the environment (conftest.py)
    if sys.argv[1] == "devices":
        devices_main(Path(sys.argv[2]))
    else:
        process_main(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
