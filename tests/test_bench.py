"""The benchmark runs end to end on a tiny config and emits a well-formed table and JSON.

Speed itself is never asserted here: timings on a shared machine are not a test.
"""
import json

from jax_rnnlm import bench
from jax_rnnlm.bench import harness, profile, report


def test_quick_bench_emits_a_table_and_json_with_every_peer(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--peers", "jax_rnnlm,flax", "--profile", "1",
                       "--convergence", "2", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "of roofline" in printed and "ops per layer and time step" in printed
    table = [l for l in printed.splitlines() if l.startswith("|")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header[:3] == ["config", "peer", "train tok/s"] and "MFU" in header
    rows = [[c.strip() for c in l.strip("|").split("|")] for l in table[2:]]
    assert [r[1] for r in rows] == ["jax_rnnlm", "flax"]
    assert all(len(r) == len(header) for r in rows)
    report = json.loads(out.read_text())
    (result,) = report["results"]
    for rec in result["peers"].values():
        assert rec["train_tokens_per_s"] > 0 and rec["eval_b1_tokens_per_s"] > 0
        assert rec["peak_rss_mb"] > 0 and rec["compile_s"] > 0
        assert rec["ops_per_step"] > rec["eval_ops_per_step"] > 0   # bench/ops.py's count
    assert result["peers"]["jax_rnnlm"]["train_x_flax"] > 0
    assert report["roofline_gflops"]["float32"] > 0 and report["roofline_gflops"]["memory_gbs"] > 0
    assert report["meta"]["threads"] >= 1 and report["meta"]["versions"]["jax"]
    parts = result["profile"]["jax_rnnlm"]["parts_s"]  # from an XLA trace, by named scope
    assert set(parts) == set(profile.PARTS) | {"other"}
    assert result["profile"]["jax_rnnlm"]["ops_per_window"]["recurrence"] > 0
    assert all(parts[p] > 0 for p in ("embedding", "recurrence", "output_matmul", "softmax_ce"))
    conv = report["convergence"]
    for run in ("float32", "bfloat16", "float32_seed1"):
        assert conv[run]["val_ppl"] > 1
    assert conv["relative_difference"] == conv["bfloat16"]["val_ppl"] / conv["float32"][
        "val_ppl"] - 1


def test_flops_per_token_counts_the_matmuls():
    spec = harness.Spec("x", "lstm", 2, 650)
    assert spec.flops_per_token(10_000) == 2 * 2 * (650 * 2600 * 2) + 2 * 650 * 10_000


def test_part_limits_count_the_matmul_flops_of_forward_and_backward():
    config = {"batch": 20, "bptt": 35, "hidden": 200, "layers": 2, "cell": "lstm",
              "tied": False}
    limits = report.part_limits(config, 10_000, "float32")
    assert limits["output_matmul"] == ("flop", 3 * 2 * 700 * 200 * 10_000)
    assert limits["recurrence"] == ("flop", 2 * 3 * 2 * 700 * 400 * 800)


def test_cpu_name_gives_family_model_and_matrix_extensions(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\n"
                    "model name\t: Intel(R) Xeon(R) Platinum\nflags\t\t: fpu avx512f avx512_bf16 "
                    "amx_bf16 amx_tile\n\nprocessor\t: 1\nmodel name\t: other\n")
    assert report.cpu_name(info) == ("Intel(R) Xeon(R) Platinum (family 6 model 143; "
                                      "avx512f, avx512_bf16, amx_bf16)")
    info.write_text("model name\t: AMD EPYC\ncpu family\t: 26\nmodel\t\t: 2\nflags\t\t: avx512f\n")
    assert report.cpu_name(info) == "AMD EPYC (family 26 model 2; avx512f, no amx)"
    assert report.cpu_name(tmp_path / "missing") == "?"


def test_a_parallel_cell_is_benched_against_the_lstm_of_its_size_without_other_peers(
        monkeypatch, capsys):
    """Configs 5-10 run the jax_rnnlm peers only and report x LSTM against their matched
    config when it ran before them (here at toy sizes: the quick corpus and widths)."""
    toy = {"2": harness.Spec("2 lstm tiny", "lstm", 1, 16, bptt=5, batch=4),
           "5": harness.Spec("5 mingru tiny", "mingru", 1, 24, bptt=5, batch=4,
                             matched="2 lstm tiny")}
    monkeypatch.setattr(harness, "CONFIGS", [toy["2"]] * 4 + [toy["5"]] * 6)
    assert bench.main(["--quick", "--configs", "2,5", "--peers", "jax_rnnlm,flax",
                       "--repeats", "1", "--profile", "0", "--convergence", "0"]) == 0
    table = [l for l in capsys.readouterr().out.splitlines() if l.startswith("| ")]
    rows = {(r[0], r[1]): r for r in ([c.strip() for c in l.strip("|").split("|")]
                                      for l in table[1:])}
    assert ("5 mingru tiny", "flax") not in rows  # no Flax cell of it
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert float(rows[("5 mingru tiny", "jax_rnnlm")][header.index("x LSTM")]) > 0
