"""Data parallelism: sharded jit and pmap on 4 simulated CPU devices, and two real processes.

This pytest process has JAX started with one CPU device, so the multi-device runs
happen in subprocesses (tests/support/parallel_worker.py, started once per module);
the one-device references and the restore under one device run here.
"""
import functools
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_rnnlm import data, parallel, step
from support import parallel_worker as w
from support.trees import assert_leaf_lists_close

WORKER = Path(w.__file__)
DEVICES = 4
TIMEOUT_S = 300  # only against a hang (e.g. a lost peer): a loaded 2-core box needs ~100 s


def worker_env(devices):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join([str(WORKER.parents[2]), env.get("PYTHONPATH", "")])
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(out, args, devices, name):
    """A worker process writing into ``out``, its output in ``out/name.log``."""
    with open(out / f"{name}.log", "w") as log:
        return subprocess.Popen([sys.executable, WORKER, *args], env=worker_env(devices),
                                stdout=log, stderr=subprocess.STDOUT)


def finish(out, procs, what):
    """Wait for the workers (killing them after TIMEOUT_S); the results they wrote."""
    try:
        codes = [p.wait(timeout=TIMEOUT_S) for p in procs]
    except subprocess.TimeoutExpired:
        codes = None
    logs = "\n".join(p.read_text()[-3000:] for p in sorted(out.glob("*.log")))
    assert codes is not None and not any(codes), f"{what} failed ({codes}):\n{logs}"
    return out, dict(np.load(out / "results.npz"))


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    """Starts the 4-device worker and the two processes at once: they are independent,
    and overlapping their start-up and compiles keeps this module fast on two cores."""
    dev_out, proc_out = (tmp_path_factory.mktemp(n) for n in ("four_devices", "processes"))
    coordinator = f"127.0.0.1:{free_port()}"
    runs = {"devices": (dev_out, [start(dev_out, ["devices", dev_out], DEVICES, "worker")]),
            "processes": (proc_out, [start(proc_out, ["process", proc_out, coordinator, "2",
                                                      str(i)], 2, f"process{i}")
                                     for i in range(2)])}
    yield runs
    for _, procs in runs.values():
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()


@pytest.fixture(scope="module")
def four_devices(workers, reference):  # the reference is computed while the workers run
    return finish(*workers["devices"], "4-device worker")


@pytest.fixture(scope="module")
def two_processes(workers, reference):
    """Two processes on 127.0.0.1, two CPU devices each: one 4-device mesh."""
    return finish(*workers["processes"], "two-process run")


@functools.cache
def one_device_step(dropout):
    """Jitted W windows of the worker's config, compiled once per dropout rate."""
    return step.jit_train_windows(w.model_config(dropout), w.optimizer(), w.T)


def one_device_run(dropout, state=None, first_window=0):
    """(state, losses [W]) of W windows with ``step.jit_train_windows`` on this process."""
    state = w.fresh_state(dropout) if state is None else state
    streams = jnp.asarray(data.train_streams(w.corpus_ids(), w.B, w.T))
    state, metrics = one_device_step(dropout)(state, streams, jnp.asarray(w.starts(first_window)))
    return state, np.asarray(metrics["loss"])


@pytest.fixture(scope="module")
def reference():
    """One device: K windows with dropout (state, losses), and K without."""
    state, losses = one_device_run(w.DROPOUT)
    state0, losses0 = one_device_run(0.0)
    return {"state": state, "loss": losses, "state0": state0, "loss0": losses0}


def assert_same_numbers(actual, expected):
    """Equal up to float32 summation order: 1e-6 relative (1e-7 absolute near zero)."""
    assert_leaf_lists_close(actual, expected, rtol=1e-6, atol=1e-7)


def test_sharded_step_on_four_devices_equals_one_device(four_devices, reference):
    _, r = four_devices
    assert r["num_devices"] == DEVICES
    assert_same_numbers([r["sharded_loss"]], [reference["loss"]])
    assert_same_numbers(w.unpacked(r, "sharded"), w.leaves(reference["state"].params))


def test_carry_is_sharded_with_its_streams(four_devices, reference):
    _, r = four_devices
    assert r["carry_spec"] == str(jax.sharding.PartitionSpec("batch"))
    assert r["carry_shards"] == DEVICES
    assert_same_numbers(w.unpacked(r, "sharded_carry"), w.leaves(reference["state"].carry))


def test_pmap_step_on_four_devices_equals_one_device(four_devices, reference):
    _, r = four_devices
    assert_same_numbers([r["pmap_loss"]], [reference["loss0"]])
    assert_same_numbers(w.unpacked(r, "pmap"), w.leaves(reference["state0"].params))
    assert_same_numbers(w.unpacked(r, "pmap_carry"), w.leaves(reference["state0"].carry))


@pytest.mark.parametrize("batch_size", [DEVICES, 1])
def test_sharded_evaluate_gives_the_one_device_perplexity(four_devices, reference, batch_size):
    _, r = four_devices
    ppl, _ = step.evaluate(reference["state"].params, w.model_config(), w.corpus_ids(),
                           batch_size=batch_size, bptt=w.T)
    np.testing.assert_allclose(r[f"ppl_b{batch_size}"], ppl, rtol=1e-6)


def restore_on_one_device(workdir):
    return w.restore(workdir, w.fresh_state())


def test_checkpoint_saved_on_four_devices_continues_identically_on_one(four_devices,
                                                                       reference):
    out, _ = four_devices
    state = restore_on_one_device(out / "run")
    assert int(state.step) == w.W and len(jax.tree.leaves(state.carry)[0].devices()) == 1
    resumed, losses = one_device_run(w.DROPOUT, state, first_window=w.W)
    expected = jax.tree.map(lambda x: x.copy(), reference["state"])  # the call donates it
    straight, straight_losses = one_device_run(w.DROPOUT, expected, first_window=w.W)
    assert_same_numbers([losses], [straight_losses])
    assert_same_numbers(w.leaves(resumed.params), w.leaves(straight.params))


def test_two_processes_train_like_one_process_with_the_same_global_batch(two_processes,
                                                                        reference):
    _, r = two_processes
    assert (r["processes"], r["devices"]) == (2, 4)
    assert_same_numbers([r["loss"]], [reference["loss"]])
    assert_same_numbers(w.unpacked(r, "params"), w.leaves(reference["state"].params))
    assert_same_numbers(w.unpacked(r, "carry"), w.leaves(reference["state"].carry))
    ppl, _ = step.evaluate(reference["state"].params, w.model_config(), w.corpus_ids(),
                           batch_size=w.B, bptt=w.T)
    np.testing.assert_allclose(r["ppl"], ppl, rtol=1e-6)


def test_each_process_places_only_its_own_streams(two_processes):
    _, r = two_processes
    # B=8 streams over 4 devices: process 0 holds the devices of rows 0-1 and 2-3.
    assert list(r["local_rows"]) == [0, 2]


def test_two_process_checkpoint_restores_on_one_process(two_processes, reference):
    out, _ = two_processes
    state = restore_on_one_device(out / "run")
    assert_same_numbers(w.leaves(state.params), w.leaves(reference["state"].params))
    assert_same_numbers(w.leaves(state.carry), w.leaves(reference["state"].carry))


def test_two_process_checkpoint_resumes_onto_the_mesh(two_processes):
    _, r = two_processes
    assert r["resumed_carry_spec"] == str(jax.sharding.PartitionSpec("batch"))
    assert_same_numbers(w.unpacked(r, "resumed"), w.unpacked(r, "params"))


def test_batch_that_does_not_divide_by_the_devices_is_a_clear_error():
    streams = np.zeros((3, 20), np.int32)
    with pytest.raises(ValueError, match="global batch B=3 does not divide by 2 devices"):
        parallel.prepare(w.fresh_state(), len(streams), w.model_config(), w.optimizer(), 2)


def test_more_devices_than_exist_is_a_clear_error():
    n = jax.device_count()
    with pytest.raises(ValueError, match=f"--devices {n + 1}: this run sees {n} "):
        parallel.make_mesh(n + 1)


def test_no_distributed_settings_means_one_process(monkeypatch):
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    assert parallel.initialize_distributed() == (0, 1)


def test_partial_distributed_settings_are_a_clear_error(monkeypatch):
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1234")
    monkeypatch.delenv("JAX_PROCESS_ID", raising=False)
    with pytest.raises(ValueError, match="needs the coordinator address, the number of"):
        parallel.initialize_distributed(num_processes=2)


def _cli_train(corpus_dir, workdir, *extra, devices_env=2):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_env}",
           "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-m", "jax_rnnlm", "train", "--data", str(corpus_dir),
                           "--workdir", str(workdir), "--cell", "lstm", "--embed-dim", "8",
                           "--hidden-dim", "8", "--batch-size", "4", "--bptt", "5",
                           "--epochs", "2", "--lr", "1", "--eval-batch-size", "2", *extra],
                          capture_output=True, text=True, timeout=300, env=env)


def test_cli_devices_flag_trains_like_one_device(tiny_corpus_dir):
    one = _cli_train(tiny_corpus_dir, tiny_corpus_dir / "one", "--devices", "1")
    two = _cli_train(tiny_corpus_dir, tiny_corpus_dir / "two", "--devices", "2")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    a, b = (json.loads(p.stdout.splitlines()[-1]) for p in (one, two))
    assert b["val_ppl"] == pytest.approx(a["val_ppl"], rel=1e-5)
    assert b["test_ppl"] == pytest.approx(a["test_ppl"], rel=1e-5)
    bad = _cli_train(tiny_corpus_dir, tiny_corpus_dir / "three", "--devices", "3",
                     devices_env=3)
    assert bad.returncode == 2 and "does not divide by 3 devices" in bad.stderr
