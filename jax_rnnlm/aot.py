"""A run's train and evaluation steps compiled ahead of time for a device topology.

A TPU slice is described by libtpu without owning one (``jax.experimental.
topologies``), so the exact program a scaled run would execute (the data-parallel
shardings of ``parallel``, W windows per call, DNI and the regularisers) can be
compiled on a CPU host, and its per-device memory, FLOPs and collectives read off
before any accelerator is rented. ``cpu:N`` compiles for N host devices (they must
exist in this process: ``XLA_FLAGS=--xla_force_host_platform_device_count=N``, or
``jax.config.update("jax_num_cpu_devices", N)`` before JAX starts its backends).
"""
import dataclasses
import importlib.util
import math
import os
import re
import time

import jax
import jax.numpy as jnp
from jax.extend import core as jcore

from jax_rnnlm import data, hlo, model, optim, parallel, step, train
from jax_rnnlm.config import ModelConfig, TrainConfig

GIB = 2 ** 30
# HBM per chip, from Google Cloud's TPU docs (cloud.google.com/tpu/docs/v4, /v5e, /v5p,
# /v6e, read 2026-12): v4 32 GiB, v5e 16 GiB, v5p 95 GiB, v6e 32 GiB.
HBM_BYTES = {"v4": 32 * GIB, "v5e": 16 * GIB, "v5p": 95 * GIB, "v6e": 32 * GIB}
# v4 and v5p chips hold two TensorCores that JAX runs as one "megacore" device, as on
# a TPU VM; libtpu describes them per core unless asked for this chip configuration.
CHIP_CONFIG = {"v4": "megacore", "v5p": "megacore"}
_NAME = re.compile(r"^(?:(?P<gen>v4|v5e|v5p|v6e):(?P<shape>\d+(?:x\d+){1,2})|cpu:(?P<n>\d+))$")
FORMS = "v5e:2x2, v5e:4x4, v4:2x2x2, v5p:2x2x2, v6e:2x2, ... or cpu:N"
EXIT_DOES_NOT_FIT = 3


class DoesNotFit(Exception):
    """The run's peak memory per device exceeds the chip's HBM."""


def parse_topology(name):
    """(platform, generation or None, N for cpu:N else None); ValueError naming the forms."""
    m = _NAME.match(name or "")
    if not m or (m["n"] is not None and int(m["n"]) < 1):
        raise ValueError(f"--topology {name!r}: expected a TPU slice (a generation "
                         f"{', '.join(HBM_BYTES)} and a chip grid) or host devices: {FORMS}")
    return ("cpu", None, int(m["n"])) if m["n"] else ("tpu", m["gen"], None)


def cpu_device_count(name):
    """N of a ``cpu:N`` topology name, else None (nothing to set up before JAX starts)."""
    platform, _, n = parse_topology(name)
    return n if platform == "cpu" else None


def compile_from_host(name):
    """Make this process compile for topology ``name`` from its CPU: JAX's own backend is
    the host (unless JAX_PLATFORMS names one), and libtpu, asked only to describe a slice,
    does not look for TPU metadata (on a host with no TPU that logs a page of warnings).
    Call it before JAX starts its backends."""
    if not os.environ.get("JAX_PLATFORMS"):
        jax.config.update("jax_platforms", "cpu")
    if parse_topology(name)[0] == "tpu":
        os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
        os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")


@dataclasses.dataclass(frozen=True)
class Topology:
    """The devices a run would use, and the memory each has."""
    name: str
    devices: tuple            # jax devices (compile-only ones for a TPU slice)
    hbm_bytes: int | None     # per device (one per chip), where the chip's figure is known

    @property
    def hosts(self):
        return len({d.process_index for d in self.devices})


def topology(name):
    """The devices of ``name``: this process's first N host CPUs, or a TPU slice from libtpu."""
    platform, gen, n = parse_topology(name)
    if platform == "cpu":
        have = jax.devices("cpu")
        if len(have) < n:
            raise ValueError(
                f"--topology {name}: this process has {len(have)} host device(s) "
                f"(jax-rnnlm compile sets up N itself; from Python, set "
                f"XLA_FLAGS=--xla_force_host_platform_device_count={n} before JAX starts)")
        return Topology(name, tuple(have[:n]), None)
    if importlib.util.find_spec("libtpu") is None:
        raise ValueError(f"--topology {name} needs libtpu to describe the TPU slice: "
                         f'pip install -e ".[tpu]" (or pip install "jax[tpu]=={jax.__version__}")')
    from jax.experimental import topologies
    try:
        desc = topologies.get_topology_desc(topology_name=name, platform="tpu",
                                            chip_config_name=CHIP_CONFIG.get(gen, "default"))
    except Exception as e:  # libtpu names the problem (an unknown grid, for one)
        raise ValueError(f"--topology {name}: libtpu could not describe it: "
                         f"{str(e).splitlines()[0]}") from e
    return Topology(name, tuple(desc.devices), HBM_BYTES[gen])


def _jaxprs(value):
    if isinstance(value, jcore.ClosedJaxpr):
        return [value.jaxpr]
    if isinstance(value, jcore.Jaxpr):
        return [value]
    if isinstance(value, (tuple, list)):
        return [j for v in value for j in _jaxprs(v)]
    return []


def _branch_for(eqn, platform):
    """The branch of a ``lax.platform_dependent`` cond that ``platform`` runs, else None."""
    platforms = eqn.params.get("branches_platforms")
    if not platforms:
        return None
    named = [i for i, ps in enumerate(platforms) if ps and platform in ps]
    return named[0] if named else platforms.index(None)


def matmul_flops(jaxpr, platform):
    """FLOPs of the dot_generals of a jaxpr (2 per multiply-add) as ``platform`` runs it: a
    scan's body times its length, a ``platform_dependent`` cond's branch for the platform,
    any other cond's costliest branch (an upper bound; e.g. the adaptive softmax skips
    a tail cluster no target of the chunk falls in)."""
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (contracting, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(
                lhs[i] for i in contracting)
            continue
        inner = [matmul_flops(j, platform) for v in eqn.params.values() for j in _jaxprs(v)]
        if not inner:
            continue
        if eqn.primitive.name == "cond":
            branch = _branch_for(eqn, platform)
            total += max(inner) if branch is None else inner[branch]
        else:
            total += sum(inner) * eqn.params.get("length", 1)
    return total


def measure(fn, args, steps, *, platform, split_over):
    """Trace, lower and compile the jitted ``fn`` for ``args`` (abstract, with
    shardings) on ``platform``: compile time (lowering and XLA), per-device memory,
    collectives, and matmul FLOPs per step and device (the work is split over
    ``split_over`` devices)."""
    traced = fn.trace(*args)
    flops = matmul_flops(traced.jaxpr.jaxpr, platform)
    t0 = time.perf_counter()
    compiled = traced.lower().compile()
    seconds = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    memory = {"arguments": mem.argument_size_in_bytes, "outputs": mem.output_size_in_bytes,
              "temporaries": mem.temp_size_in_bytes, "aliased": mem.alias_size_in_bytes}
    # Donated arguments come back as outputs in the same buffers: count them once.
    memory["total"] = memory["arguments"] + memory["outputs"] + memory["temporaries"] \
        - memory["aliased"]
    cost = compiled.cost_analysis() or {}
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    collectives, unknown = hlo.executed_collectives(compiled.as_text())
    return {"compile_s": round(seconds, 3), "steps_per_call": steps,
            "memory_bytes": memory,
            "matmul_flops_per_step": flops / steps / split_over,
            # XLA's static estimate of the whole call: it counts each loop body once.
            "xla_cost_per_call": {"flops": cost.get("flops"),
                                  "bytes_accessed": cost.get("bytes accessed")},
            "collectives_per_call": collectives,
            "collectives_per_step": sum(collectives.values()) / steps,
            "loops_of_unknown_trip_count": unknown}


def _abstract(tree, sharding):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                        tree)


def train_program(model_cfg: ModelConfig, cfg: TrainConfig, mesh, T):
    """(the train step ``train.place_run`` builds for windows of T steps, its abstract
    arguments, W): ``parallel.sharded_train_windows`` with the state placed as
    ``parallel.shard_state`` places it (``step.jit_train_windows`` on one device),
    streams [B, W·T + 1] and starts [W], as ``train.train_epoch`` passes a full call."""
    tx = optim.from_config(cfg)
    state = jax.eval_shape(lambda key: step.init_state(key, model_cfg, tx, cfg.batch_size,
                                                       cfg.dni), jax.random.key(cfg.seed))
    state = jax.tree.map(lambda sharding, part: _abstract(part, sharding),
                         parallel.state_sharding(mesh), state)
    W = cfg.windows_per_call
    streams = jax.ShapeDtypeStruct((cfg.batch_size, W * T + 1), jnp.int32,
                                   sharding=parallel.batch_sharding(mesh))
    starts = jax.ShapeDtypeStruct((W,), jnp.int32, sharding=parallel.replicated(mesh))
    if mesh.size == 1:
        run = step.jit_train_windows(model_cfg, tx, T, cfg.dni)
    else:
        run = parallel.sharded_train_windows(model_cfg, tx, T, mesh, cfg.dni)
    return run, (state, streams, starts), W


def eval_program(model_cfg: ModelConfig, n_tokens, batch_size, bptt, mesh):
    """(``step.eval_windows``, its arguments for the full windows that
    ``parallel.sharded_evaluate`` runs on a split of ``n_tokens`` tokens with
    ``batch_size`` streams, W). The shorter tail window is a smaller program."""
    L = n_tokens // batch_size
    sharding = parallel.eval_sharding(mesh, batch_size)
    params = _abstract(jax.eval_shape(lambda key: model.init_params(key, model_cfg),
                                      jax.random.key(0)), parallel.replicated(mesh))
    carry = _abstract(jax.eval_shape(lambda: model.init_carry(model_cfg, batch_size)),
                      sharding)
    streams = jax.ShapeDtypeStruct((batch_size, L), jnp.int32, sharding=sharding)
    W = max((L - 1) // bptt, 1)
    T = min(bptt, L - 1)
    starts = jax.ShapeDtypeStruct((W,), jnp.int32)  # a host array, as stream_perplexity's
    return step.eval_windows, (params, model_cfg, carry, streams, starts, T), W


def check_devices(cfg: TrainConfig, topo: Topology):
    """ValueError unless the run would use every device of the topology, B split evenly."""
    n = len(topo.devices)
    if cfg.devices not in (0, n):
        raise ValueError(f"--devices {cfg.devices}: the topology {topo.name} has {n} "
                         f"devices, and a run there uses all of them; leave --devices out")
    parallel.check_batch(cfg.batch_size, n)


def compile_run(model_cfg: ModelConfig, cfg: TrainConfig, corpus: data.Corpus, topo: Topology):
    """The report of ``jax-rnnlm compile``: the topology, the batch per device, the
    compiled train step (with --variable-bptt, that of the longest window) and
    evaluation steps (valid at --eval-batch-size, test at --test-batch-size).
    ValueError before compiling unless the run would use the topology's devices."""
    check_devices(cfg, topo)
    n = len(topo.devices)
    mesh = parallel.make_mesh_over(topo.devices)
    T = train.longest_window(cfg)
    report = {"topology": topo.name, "platform": topo.devices[0].platform,
              "device_kind": topo.devices[0].device_kind, "devices": n, "hosts": topo.hosts,
              "global_batch": cfg.batch_size, "per_device_batch": cfg.batch_size // n,
              "bptt": T, "windows_per_call": cfg.windows_per_call,
              "hbm_per_device_bytes": topo.hbm_bytes}
    platform = report["platform"]
    report["train"] = measure(*train_program(model_cfg, cfg, mesh, T), platform=platform,
                              split_over=n)
    report["eval"] = []
    for split, batch in (("valid", cfg.eval_batch_size), ("test", cfg.test_batch_size)):
        sharded = batch % n == 0
        measured = measure(*eval_program(model_cfg, len(getattr(corpus, split)), batch,
                                         cfg.bptt, mesh), platform=platform,
                           split_over=n if sharded else 1)
        report["eval"].append({"split": split, "batch_size": batch, "sharded": sharded,
                               **measured})
    # Evaluation runs while the train state is still held (train.validate).
    held = report["train"]["memory_bytes"]["arguments"]
    peak = max([report["train"]["memory_bytes"]["total"]] +
               [held + e["memory_bytes"]["total"] for e in report["eval"]])
    report["peak_bytes_per_device"] = peak
    report["fits"] = None if topo.hbm_bytes is None else peak <= topo.hbm_bytes
    return report


def check_fits(report):
    """DoesNotFit, in one line, when the run would not fit the chips' memory."""
    if report["fits"] is False:
        raise DoesNotFit(
            f"{report['topology']}: the run needs {report['peak_bytes_per_device'] / GIB:.2f} "
            f"GiB per device, more than the {report['hbm_per_device_bytes'] / GIB:.0f} GiB "
            f"of HBM a {report['device_kind']} device has; use a smaller --batch-size, "
            f"--windows-per-call or model, or more chips")
