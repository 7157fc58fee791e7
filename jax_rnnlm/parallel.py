"""Data parallelism: the B streams of truncated BPTT split over devices and hosts.

Both forms run the one pure step of ``step.train_windows``; nothing of the
model or the step is written twice.

* ``sharded_train_windows``: ``jax.jit`` with ``NamedSharding`` on a 1-D mesh
  whose axis is named "batch". The streams [B, L] and the carry [B, H] are
  split along B (each device holds B/n whole streams, so the hidden state of
  a stream stays on the device that reads it); params, optimizer state, key
  and step are replicated, and XLA inserts the all-reduce of the gradient.
  The program is the one-device program, dropout masks included (threefry
  draws the same bits for a sharded shape), so the numbers match one device
  up to the order of float sums.
* ``pmap_train_windows``: the classic ``jax.pmap`` form. Streams and carry get
  a leading device axis [n, B/n, ...], and ``train_step`` averages the loss
  and gradients with ``lax.pmean`` once, before clipping. Without dropout it
  matches one device; with dropout each device draws its own masks (same
  distribution, different numbers), because a device sees only its B/n rows.

Several hosts: every process calls ``initialize_distributed`` first, then
builds the same mesh over the devices of all processes; ``process_streams``
materialises on each process only the rows its own devices hold.
"""
import functools
import os

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from jax_rnnlm import data, model, step

BATCH = "batch"  # the one mesh axis: the B streams of truncated BPTT


def initialize_distributed(coordinator=None, num_processes=None, process_id=None):
    """Join a multi-process run; returns (process index, process count).

    Arguments win over the environment (JAX_COORDINATOR_ADDRESS,
    JAX_NUM_PROCESSES, JAX_PROCESS_ID). With none of them set, or one process,
    nothing is initialised. ``coordinator="auto"`` lets JAX read the cluster
    (SLURM, Open MPI, Cloud TPU pods). Call it before anything touches a device.
    """
    env = os.environ
    coordinator = coordinator or env.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and env.get("JAX_NUM_PROCESSES"):
        num_processes = int(env["JAX_NUM_PROCESSES"])
    if process_id is None and env.get("JAX_PROCESS_ID"):
        process_id = int(env["JAX_PROCESS_ID"])
    if coordinator == "auto":
        jax.distributed.initialize()
    elif (coordinator, num_processes, process_id) == (None, None, None) or num_processes == 1:
        return 0, 1
    elif None in (coordinator, num_processes, process_id):
        raise ValueError(
            f"a multi-process run needs the coordinator address, the number of processes "
            f"and this process's id (got coordinator={coordinator!r}, num_processes="
            f"{num_processes!r}, process_id={process_id!r}); pass all three or set "
            f"JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID, or use "
            f"'auto' on SLURM, Open MPI or a TPU pod")
    else:
        jax.distributed.initialize(coordinator, num_processes, process_id)
    return jax.process_index(), jax.process_count()


def is_main_process():
    """True on the process that writes logs (process 0); every process saves checkpoints."""
    return jax.process_index() == 0


def check_batch(batch_size, num_devices):
    """ValueError unless the B streams split evenly over the devices."""
    if batch_size % num_devices:
        raise ValueError(
            f"global batch B={batch_size} does not divide by {num_devices} devices: every "
            f"device must hold the same number of streams; use a --batch-size that is a "
            f"multiple of {num_devices}, or a --devices count that divides {batch_size}")


def make_mesh(num_devices=None):
    """1-D "batch" mesh over the first ``num_devices`` devices of all processes (default: all)."""
    available = jax.device_count()
    n = available if num_devices is None else num_devices
    if not isinstance(n, int) or not 1 <= n <= available:
        raise ValueError(f"--devices {n}: this run sees {available} "
                         f"{jax.default_backend()} device(s); choose 1..{available}")
    if jax.process_count() > 1 and n != available:
        raise ValueError(f"--devices {n}: a {jax.process_count()}-process run uses all "
                         f"{available} devices of all processes")
    return make_mesh_over(jax.devices()[:n])


def make_mesh_over(devices):
    """1-D "batch" mesh over these devices: this run's, or a topology's (aot.py)."""
    # Auto axes: XLA propagates the batch sharding through the embedding gather,
    # which Explicit axes (make_mesh's default) reject.
    return jax.make_mesh((len(devices),), (BATCH,), axis_types=(AxisType.Auto,),
                         devices=list(devices))


def batch_sharding(mesh):
    """Leading axis B split over the mesh, the rest whole: streams [B, L], carry [B, H]."""
    return NamedSharding(mesh, P(BATCH))


def replicated(mesh):
    return NamedSharding(mesh, P())


def eval_sharding(mesh, batch_size):
    """Of the eval streams [B, L] and carry: split on B, or replicated when B does not
    divide by the devices (same result, no speed-up: the 1-stream test convention)."""
    return batch_sharding(mesh) if batch_size % mesh.size == 0 else replicated(mesh)


def state_sharding(mesh):
    """A TrainState of shardings: carry split on B, everything else replicated."""
    rep = replicated(mesh)
    return step.TrainState(params=rep, opt_state=rep, carry=batch_sharding(mesh), key=rep,
                           step=rep, sg=rep, sg_opt_state=rep)


def place(x, sharding):
    """One array, the same value on every process, as a global array with ``sharding``.

    Across processes, each copies to its devices only the pieces they hold
    (``jax.device_put`` refuses committed one-device arrays there, and compares
    whole values between processes first). In one process it is ``device_put``.
    """
    if jax.process_count() == 1 or (isinstance(x, jax.Array) and not x.is_fully_addressable):
        return jax.device_put(x, sharding)  # one process, or already global: a reshard
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(place(jax.random.key_data(x), sharding),
                                        impl=jax.random.key_impl(x))
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def place_tree(tree, sharding):
    """``place`` on every leaf."""
    return jax.tree.map(lambda x: place(x, sharding), tree)


def shard_state(state, mesh):
    """The state placed on the mesh: params, opt_state, key, step replicated; carry split on B."""
    check_batch(jax.tree.leaves(state.carry)[0].shape[0], mesh.size)
    return jax.tree.map(lambda sharding, part: place_tree(part, sharding),
                        state_sharding(mesh), state)


def shard_streams(streams_BL, mesh):
    """Global streams [B, L] split on B; each process copies only the rows of its own devices."""
    check_batch(np.shape(streams_BL)[0], mesh.size)
    return place(streams_BL, batch_sharding(mesh))


def process_streams(ids_M, batch_size, bptt, mesh, *, source="train split"):
    """Train streams [B, L] of the global batch, as one array over all processes.

    Rows are cut exactly as on one device (``data.train_streams``: row i starts
    at token i·L); a process copies to its devices only the rows they hold.
    """
    return shard_streams(data.train_streams(ids_M, batch_size, bptt, source=source), mesh)


def sharded_train_windows(cfg, tx, bptt, mesh, dni_cfg=None):
    """jit of ``step.train_windows`` over the mesh: (state, streams [B, L], starts [W]) ->
    (state, metrics of [W]). State as ``shard_state`` places it; it is donated."""
    st, rep = state_sharding(mesh), replicated(mesh)
    return jax.jit(functools.partial(step.train_windows, cfg=cfg, tx=tx, bptt=bptt,
                                     dni_cfg=dni_cfg),
                   in_shardings=(st, batch_sharding(mesh), rep),
                   out_shardings=(st, rep), donate_argnums=0)


# The pmap form: per-device leading axis n on the carry and streams, the rest broadcast.
_PMAP_AXES = step.TrainState(params=None, opt_state=None, carry=0, key=None, step=None,
                             sg=None, sg_opt_state=None)


def split_devices(tree, num_devices):
    """Every leaf [B, ...] -> [n, B/n, ...]: device d gets rows d·B/n .. (d+1)·B/n - 1."""
    def split(x):
        check_batch(x.shape[0], num_devices)
        return x.reshape(num_devices, x.shape[0] // num_devices, *x.shape[1:])
    return jax.tree.map(split, tree)


def merge_devices(tree):
    """Inverse of ``split_devices``: every leaf [n, B/n, ...] -> [B, ...]."""
    return jax.tree.map(lambda x: x.reshape(x.shape[0] * x.shape[1], *x.shape[2:]), tree)


def pmap_state(state, num_devices):
    """The one-device state with its carry split per device, for ``pmap_train_windows``."""
    return state.replace(carry=split_devices(state.carry, num_devices))


def unpmap_state(state):
    """The pmap state back in the one-device layout (carry [B, H]), e.g. to save or evaluate."""
    return state.replace(carry=merge_devices(state.carry))


def pmap_train_windows(cfg, tx, bptt, devices=None, dni_cfg=None):
    """pmap of ``step.train_windows``: (state, streams [n, B/n, L], starts [W]) ->
    (state, metrics of [W]). Carry [n, B/n, H] per device, the rest replicated.

    The second call compiles once more: its state arrives placed on the devices
    (pmap's own outputs), where the first came from ``pmap_state`` on the host.
    """
    run = functools.partial(step.train_windows, cfg=cfg, tx=tx, bptt=bptt, axis_name=BATCH,
                            dni_cfg=dni_cfg)
    return jax.pmap(run, axis_name=BATCH, in_axes=(_PMAP_AXES, 0, None),
                    out_axes=(_PMAP_AXES, None), devices=devices, donate_argnums=0)


def mesh_of(tree):
    """The mesh a placed pytree lives on, or None for plain one-device arrays."""
    sharding = getattr(jax.tree.leaves(tree)[0], "sharding", None)
    return sharding.mesh if isinstance(sharding, NamedSharding) else None


def sharded_evaluate(params, cfg, ids_M, *, mesh=None, batch_size=10, bptt=35,
                     source="split"):
    """``step.evaluate`` with the eval streams and carry split over the mesh.

    ``mesh`` defaults to the one ``params`` live on; streams and carry are
    placed by ``eval_sharding``.
    """
    mesh = mesh or mesh_of(params) or make_mesh(1)
    sharding = eval_sharding(mesh, batch_size)
    streams = data.batchify(ids_M, batch_size, source=source)
    return step.stream_perplexity(place_tree(params, replicated(mesh)), cfg,
                                  place(streams, sharding),
                                  place_tree(model.init_carry(cfg, batch_size), sharding), bptt)


def prepare(state, batch_size, cfg, tx, num_devices=None, dni_cfg=None):
    """What ``train.fit`` needs to train on ``num_devices`` (default: every device of every
    process): (placed state, ``place`` for train streams, ``run_windows``), where
    ``place(streams [B, X])`` shards the rows of host streams (a process copies only
    its own) and ``run_windows(T)`` is ``step.jit_train_windows``'s (state, streams
    [B, X], starts [W]) -> (state, metrics of [W]) for windows of T steps, with the
    batch split over the mesh (one per T, built once)."""
    n = jax.device_count() if num_devices is None else num_devices
    check_batch(batch_size, n)
    mesh = make_mesh(n)
    return (shard_state(state, mesh), functools.partial(shard_streams, mesh=mesh),
            functools.cache(lambda T: sharded_train_windows(cfg, tx, T, mesh, dni_cfg)))
