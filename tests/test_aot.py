"""jax-rnnlm compile: topology names, the HLO reading (trip counts, collectives), matmul
FLOPs, and the cpu:N compile end to end in subprocesses (this pytest process has one
CPU device). The TPU compile is recorded by experiments/tpu_compile.py, not tested here:
libtpu is a large download that CI does not install."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from hypothesis import given, strategies as st

from jax_rnnlm import aot, hlo, precision
from jax_rnnlm.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--embed-dim", "8", "--hidden-dim", "8", "--num-layers", "2", "--bptt", "5",
         "--windows-per-call", "3", "--eval-batch-size", "4", "--test-batch-size", "1"]


def run(args, extra_env=None):
    env = dict(os.environ, JAX_PLATFORMS="cpu", **(extra_env or {}))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"),
                                         env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize("name,parsed", [("v5e:2x2", ("tpu", "v5e", None)),
                                         ("v4:2x2x2", ("tpu", "v4", None)),
                                         ("v5p:4x4x8", ("tpu", "v5p", None)),
                                         ("cpu:8", ("cpu", None, 8))])
def test_topology_names_parse(name, parsed):
    assert aot.parse_topology(name) == parsed


@pytest.mark.parametrize("name", ["", "v5e", "v5e:2", "v3:2x2", "cpu:0", "cpu:x", "tpu:4",
                                  "v5e:2x2 "])
def test_a_bad_topology_name_lists_the_forms(name):
    with pytest.raises(ValueError, match="cpu:N"):
        aot.parse_topology(name)


def test_a_tpu_topology_without_libtpu_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "libtpu" else real(name, *a))
    with pytest.raises(ValueError, match=r'pip install -e "\.\[tpu\]"'):
        aot.topology("v5e:2x2")


def test_more_host_devices_than_the_process_has_are_refused():
    with pytest.raises(ValueError, match="xla_force_host_platform_device_count=64"):
        aot.topology("cpu:64")


def _hlo(limit_line, body_ops, extra=""):
    """A program with one while loop whose body runs ``body_ops`` (and ``extra`` lines)."""
    body = "\n".join(f"  %c{i} = f32[4]{{0}} {op}(%p), replica_groups={{}}, to_apply=%add"
                     for i, op in enumerate(body_ops))
    return f"""HloModule m

%add (a: f32[], b: f32[]) -> f32[] {{
  %a = f32[] parameter(0)
  %s = f32[] all-gather(%a)
}}

%gathers (g: f32[4]) -> f32[4] {{
  %g = f32[4]{{0}} parameter(0)
  %g1 = f32[4]{{0}} all-gather(%g), dimensions={{0}}
  %g2 = f32[4]{{0}} all-gather(%g1), dimensions={{0}}
}}

%none (n: f32[4]) -> f32[4] {{
  %n = f32[4]{{0}} parameter(0)
}}

%body (p: (s32[], f32[4])) -> (s32[], f32[4]) {{
  %p = (s32[], f32[4]) parameter(0)
{body}
{extra}
}}

%cond (q: (s32[], f32[4])) -> pred[] {{
  %q = (s32[], f32[4]) parameter(0)
  %i = s32[] get-tuple-element(%q), index=0
{limit_line}
}}

ENTRY %main (x: f32[4]) -> f32[4] {{
  %x = f32[4]{{0}} parameter(0)
  %once = f32[4]{{0}} all-reduce(%x), replica_groups={{}}, to_apply=%add
  %w = (s32[], f32[4]) while(%t), condition=%cond, body=%body, backend_config={{}}
}}
"""


def _limit(trips):
    return (f"  %n = s32[]{{:T(128)}} constant({trips})\n"
            f"  ROOT %lt = pred[] compare(%i, %n), direction=LT")


@given(st.integers(1, 50), st.lists(st.sampled_from(
    ["all-reduce", "all-gather", "all-reduce-start", "all-reduce-done", "add"]), max_size=6))
def test_collectives_count_once_per_loop_iteration(trips, body_ops):
    """The condition's ``i < N`` gives the trips (TPU programs carry no trip-count note);
    an async pair counts once; the reduction computation is not walked into."""
    counts, unknown = hlo.executed_collectives(_hlo(_limit(trips), body_ops))
    want = {"all-reduce": 1}
    for op in body_ops:
        base = op.removesuffix("-start")
        if base in ("all-reduce", "all-gather") and not op.endswith("-done"):
            want[base] = want.get(base, 0) + trips
    assert (counts, unknown) == (want, 0)


@pytest.mark.parametrize("trips", [1, 7])
def test_collectives_inside_fusions_count_and_a_conditional_counts_one_branch(trips):
    extra = ("  %f = f32[4]{0} fusion(%p), kind=kLoop, calls=%gathers\n"
             "  %k = f32[4]{0} conditional(%b, %p, %p), branch_computations={%none, %gathers}")
    counts, _ = hlo.executed_collectives(_hlo(_limit(trips), [], extra))
    assert counts == {"all-reduce": 1, "all-gather": 4 * trips}


def test_a_loop_of_unknown_length_is_counted_once_and_reported():
    limit = "  ROOT %lt = pred[] compare(%i, %i), direction=LT"
    assert hlo.executed_collectives(_hlo(limit, ["all-gather"])) == (
        {"all-reduce": 1, "all-gather": 1}, 1)


@given(st.integers(1, 6), st.integers(1, 5), st.integers(1, 7), st.integers(1, 4))
def test_matmul_flops_count_every_product_of_a_scan(T, B, H, G):
    """A scan of T steps of [B, H] @ [H, G·H] plus one product outside: exact FLOPs."""
    def f(h, w, v):
        def body(c, _):
            return jnp.tanh(c @ w)[:, :H], None
        c, _ = jax.lax.scan(body, h, None, length=T)
        return c @ v
    h, w, v = jnp.ones((B, H)), jnp.ones((H, G * H)), jnp.ones((H, 3))
    flops = aot.matmul_flops(jax.make_jaxpr(f)(h, w, v).jaxpr, "tpu")
    assert flops == T * 2 * B * H * G * H + 2 * B * H * 3


@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 6), st.integers(1, 6))
def test_matmul_flops_of_a_gradient_take_the_platform_s_form(T, B, I, O):
    """The forward and backward products of ``precision.matmul`` (a custom VJP): x @ w,
    dx = g wᵀ, dw = xᵀ g; on the CPU a wide output (O ≥ 2I) writes xᵀ first by an
    identity product, which the TPU program does not have."""
    x, w = jnp.ones((T, B, I)), jnp.ones((I, O))
    jaxpr = jax.make_jaxpr(jax.grad(lambda x, w: jnp.sum(precision.matmul(x, w)),
                                    argnums=(0, 1)))(x, w).jaxpr
    products = 3 * 2 * T * B * I * O
    identity = 2 * I * I * T * B if O >= 2 * I else 0
    assert aot.matmul_flops(jaxpr, "tpu") == products
    assert aot.matmul_flops(jaxpr, "cpu") == products + identity


def test_matmul_flops_of_another_cond_take_its_costliest_branch():
    x = jnp.ones((4, 3))
    jaxpr = jax.make_jaxpr(lambda p: jax.lax.cond(p, lambda: x @ x.T, lambda: x[:, :1] @ x.T[:1]))(
        True).jaxpr
    assert aot.matmul_flops(jaxpr, "cpu") == 2 * 4 * 3 * 4


def test_a_devices_setting_other_than_the_topology_s_is_refused():
    topo = aot.Topology("cpu:1", tuple(jax.devices("cpu")[:1]), None)
    with pytest.raises(ValueError, match="--devices 2: the topology cpu:1 has 1 devices"):
        aot.check_devices(TrainConfig(batch_size=4, devices=2), topo)
    aot.check_devices(TrainConfig(batch_size=4, devices=1), topo)


def test_a_run_over_the_chip_s_memory_is_refused_in_one_line():
    report = {"topology": "v5e:2x2", "peak_bytes_per_device": 18 * 2 ** 30, "fits": False,
              "hbm_per_device_bytes": 16 * 2 ** 30, "device_kind": "TPU v5 lite"}
    with pytest.raises(aot.DoesNotFit, match=r"needs 18\.00 GiB per device, more than the "
                       r"16 GiB of HBM a TPU v5 lite device has"):
        aot.check_fits(report)
    aot.check_fits({**report, "fits": True})
    aot.check_fits({**report, "fits": None})  # host devices: no HBM figure


@pytest.mark.parametrize("cell", ["lstm", "mingru"])
def test_compile_on_cpu_devices_reports_memory_flops_and_one_all_reduce(tiny_corpus_dir, cell):
    r = run(["-m", "jax_rnnlm", "compile", "--topology", "cpu:4", "--data",
             str(tiny_corpus_dir), "--cell", cell, "--batch-size", "8", "--dropout", "0.2",
             *SMALL])
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout)
    assert (report["devices"], report["hosts"], report["per_device_batch"]) == (4, 1, 2)
    train = report["train"]
    assert train["steps_per_call"] == 3
    assert set(train["memory_bytes"]) == {"arguments", "outputs", "temporaries", "aliased",
                                          "total"}
    assert train["memory_bytes"]["aliased"] > 0  # the donated state
    assert train["matmul_flops_per_step"] > 0
    # data parallel: the gradient (and loss) in one all-reduce per window, nothing gathered
    assert train["collectives_per_call"] == {"all-reduce": 3}
    assert train["loops_of_unknown_trip_count"] == 0
    valid, test = report["eval"]
    assert (valid["batch_size"], valid["sharded"], test["batch_size"], test["sharded"]) == \
        (4, True, 1, False)
    assert test["collectives_per_call"] == {}
    assert report["fits"] is None and report["peak_bytes_per_device"] >= \
        train["memory_bytes"]["total"]


def test_a_batch_that_does_not_divide_is_refused_before_compiling(tiny_corpus_dir):
    r = run(["-m", "jax_rnnlm", "compile", "--topology", "cpu:4", "--data",
             str(tiny_corpus_dir), "--batch-size", "6", *SMALL])
    assert r.returncode == 2 and r.stdout == ""
    assert "B=6 does not divide by 4 devices" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_the_compiled_programs_are_the_ones_a_run_uses(tiny_corpus_dir):
    """Lowered text and shardings of the cpu:4 train step equal those of the step
    ``train.place_run`` builds for a real 4-device run (plain, and with DNI and variable
    window lengths: the longest window); the eval step likewise."""
    r = run([str(ROOT / "tests" / "support" / "aot_worker.py"), str(tiny_corpus_dir)],
            {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.splitlines()[-1])
    assert set(got) == {"plain", "dni_variable_bptt"}
    for run_kind, same in got.items():
        assert all(same.values()), (run_kind, same)
