"""What a bench run reports: ratios between peers, the targets, the tables and
summary it prints, and a description of the machine it ran on."""
import importlib.metadata
import os
import platform
import subprocess
import time
from pathlib import Path

from jax_rnnlm.bench.harness import EVAL_BATCHES, MACS_PER_H2


def add_ratios(result, earlier=()):
    """Add each peer's throughput over torch's and flax's (``train_x_torch`` ...), and for
    a config matched to an LSTM config among the ``earlier`` results, over that config's
    same peer (``train_x_matched``: a parallel cell against the LSTM of its size)."""
    peers = result["peers"]
    for name, rec in peers.items():
        for ref in ("torch", "flax"):
            if ref in peers and ref != name:
                for key in ("train", "eval_b10", "eval_b1"):
                    rec[f"{key}_x_{ref}"] = (rec[f"{key}_tokens_per_s"]
                                             / peers[ref][f"{key}_tokens_per_s"])
    matched = [r for r in earlier if r["config"]["name"] == result["config"].get("matched")]
    for name, rec in peers.items():
        if matched and name in matched[0]["peers"]:
            for key in ("train", "eval_b10", "eval_b1"):
                rec[f"{key}_x_matched"] = (rec[f"{key}_tokens_per_s"]
                                           / matched[0]["peers"][name][f"{key}_tokens_per_s"])
    return result


def targets(results, conv):
    """The issue's targets, each with its measured value and whether it is met.

    Every goal is a lower bound; an upper bound ``x <= g`` is kept as ``-x >= -g``.
    """
    out = []

    def add(what, value, goal):
        if value is not None:
            out.append({"target": what, "measured": value, "goal": goal,
                        "met": value >= goal})

    for r in results:
        name, peers = r["config"]["name"], r["peers"]
        j, bf = peers.get("jax_rnnlm"), peers.get("jax_rnnlm-bf16")
        big = r["config"]["hidden"] >= 650
        if j and "train_x_torch" in j:
            add(f"{name}: fp32 train vs torch", j["train_x_torch"], 1.0 if big else 1.3)
            for b in EVAL_BATCHES:
                add(f"{name}: eval b{b} vs torch", j[f"eval_b{b}_x_torch"], 1.5)
        if j and "train_x_flax" in j:
            for key in ("train", "eval_b10", "eval_b1"):
                add(f"{name}: {key} vs flax", j[f"{key}_x_flax"], 1.2)
        if j and big:
            add(f"{name}: fp32 MFU", j["mfu"], 0.70)
        if bf and "train_x_torch" in bf:
            add(f"{name}: bf16 train vs torch fp32", bf["train_x_torch"], 2.0)
        for p in ("jax_rnnlm", "jax_rnnlm-bf16"):
            if p in peers:
                add(f"{name}: {p} compile s <= 10", -peers[p]["compile_s"], -10.0)
            if p in peers and "train_x_matched" in peers[p]:
                add(f"{name}: {p} train vs the LSTM of its size", peers[p]["train_x_matched"],
                    1.8 if big else 1.3)
    if conv:
        add("bf16 val ppl within 1% of fp32 (|rel diff|)", -abs(conv["relative_difference"]),
            -0.01)
    return out


def format_table(results):
    """The markdown table of every peer of every config (BENCHMARKS.md's format)."""
    head = ["config", "peer", "train tok/s", "x torch", "x flax", "x LSTM", "eval b10",
            "x torch", "eval b1", "x torch", "MFU", "ops/step", "compile s", "peak MB"]
    rows = []
    f = lambda v, fmt: "-" if v is None else format(v, fmt)
    for r in results:
        for peer, rec in r["peers"].items():
            rows.append([r["config"]["name"], peer, f(rec["train_tokens_per_s"], ",.0f"),
                         f(rec.get("train_x_torch"), ".2f"), f(rec.get("train_x_flax"), ".2f"),
                         f(rec.get("train_x_matched"), ".2f"),
                         f(rec["eval_b10_tokens_per_s"], ",.0f"),
                         f(rec.get("eval_b10_x_torch"), ".2f"),
                         f(rec["eval_b1_tokens_per_s"], ",.0f"),
                         f(rec.get("eval_b1_x_torch"), ".2f"),
                         f"{rec['mfu']:.0%} " + ("bf16" if rec["mfu_vs"] == "bfloat16" else "fp32"),
                         _ops(rec), f(rec["compile_s"], ".1f"), f(rec["peak_rss_mb"], ",.0f")])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line(row) for row in rows])


def _ops(rec):
    """Ops per layer and time step of the compiled time loops, "train / eval" (bench/ops.py;
    0 for a cell without a sequential loop); "-" for a peer not compiled by XLA (torch)."""
    train, evaluate = rec.get("ops_per_step"), rec.get("eval_ops_per_step")
    if train is None or evaluate is None:
        return "-"
    return f"{train:.0f} / {evaluate:.0f}"


def part_limits(config, vocab, dtype):
    """Per part of a train window, what bounds it: FLOPs (matmul parts) or bytes moved
    (elementwise parts), as {part: ("flop" | "byte", amount)}.

    Matmul FLOPs are exact (forward + two backward products). Bytes are estimates:
    softmax_ce reads the fp32 logits [N, V] twice forward and once backward and
    writes their gradient (4 + 4 + 4 + 4 or 2 bytes); the optimizer reads and
    writes every param and reads its gradient about four times (clipping norm,
    finiteness check, scaling, update): 6 passes of 4 bytes."""
    N, H, L = config["batch"] * config["bptt"], config["hidden"], config["layers"]
    macs = MACS_PER_H2[config["cell"]] * H * H  # per token and layer (biases left out)
    params = vocab * H * (1 if config["tied"] else 2) + vocab + L * macs
    grad_bytes = 2 if dtype == "bfloat16" else 4
    return {"output_matmul": ("flop", 3 * 2 * N * H * vocab),
            "recurrence": ("flop", L * 3 * 2 * N * macs),
            "softmax_ce": ("byte", N * vocab * (12 + grad_bytes)),
            "optimizer": ("byte", 6 * 4 * params)}


def format_profile(results):
    """Per profiled config and peer: wall time per window, and for each part its op
    time, its rate and how far that is from its own limit (matmul roofline of the
    peer's dtype, or the measured memory bandwidth), and for the recurrence the ops
    executed per time step and the time per op (dispatch inside the scan)."""
    lines = []
    for r in results:
        for peer, p in (r.get("profile") or {}).items():
            dtype = "bfloat16" if peer.endswith("bf16") else "float32"
            roof, limits = r["roofline_gflops"], part_limits(r["config"], r["vocab"], dtype)
            busy = sum(p["parts_s"].values())
            parts = []
            for part, op_s in p["parts_s"].items():
                # op time is summed over the runtime's threads; a part's share of it,
                # times the wall time, is its share of the window
                sec = p["window_s"] * op_s / busy
                text = f"{part} {sec * 1e3:.1f} ms ({op_s / busy:.0%})"
                kind, amount = limits.get(part, (None, 0))
                if kind == "flop" and sec:
                    rate = amount / sec / 1e9
                    text += f" {rate:.0f} GFLOP/s = {rate / roof[dtype]:.0%} of roofline"
                elif kind == "byte" and sec and roof.get("memory_gbs"):
                    rate = amount / sec / 1e9
                    text += f" ~{rate:.0f} GB/s = {rate / roof['memory_gbs']:.0%} of bandwidth"
                if part == "recurrence" and p.get("ops_per_window", {}).get(part):
                    ops = p["ops_per_window"][part]
                    steps = r['config']['bptt'] * r['config']['layers']
                    text += (f", {ops / steps:.0f} ops per layer and time step at "
                             f"{op_s / ops * 1e6:.1f} us each")
                parts.append(text)
            lines.append(f"{r['config']['name']} [{peer}]: wall {p['window_s'] * 1e3:.1f} ms per "
                         f"window, shared by part as the op time ({busy * 1e3:.1f} ms over "
                         f"all threads):\n    " + ";\n    ".join(parts))
    return "\n".join(lines)


def format_report(report):
    """The text a run prints: machine, roofline, table, profile, convergence, targets."""
    meta, opts, roofline = report["meta"], report["meta"]["opts"], report["roofline_gflops"]
    out = [f"jax_rnnlm bench — {meta['cpu']}, {meta['threads']} threads, "
           f"commit {meta['commit']}, {meta['date']}",
           "versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v),
           f"roofline (median, {opts['matmul_size']}^3 jitted matmul): fp32 "
           f"{roofline['float32']:.0f} GFLOP/s, bf16 {roofline['bfloat16']:.0f} GFLOP/s; "
           f"memory {roofline.get('memory_gbs', float('nan')):.0f} GB/s; "
           f"load average {meta['load_avg_start'][0]:.1f} at start, "
           f"{meta['load_avg_end'][0]:.1f} at end",
           f"median of {opts['repeats']} interleaved rounds; train chunk = {opts['windows']} "
           f"windows; tokens/s; MFU = model matmul FLOP/s / roofline of the same dtype\n",
           format_table(report["results"])]
    prof = format_profile(report["results"])
    if prof:
        out.append("\nprofile (per train window):\n" + prof)
    conv = report["convergence"]
    if conv:
        out.append(f"\nconvergence ({conv['config']}, {conv['windows']} windows, lr 20): val ppl "
                   f"fp32 {conv['float32']['val_ppl']:.2f}, bf16 "
                   f"{conv['bfloat16']['val_ppl']:.2f} ({conv['relative_difference']:+.2%}); "
                   f"fp32 from another seed {conv['float32_seed1']['val_ppl']:.2f} "
                   f"({conv['seed_spread']:+.2%})")
    if report["targets"]:
        out.append("\ntargets:")
        for t in report["targets"]:
            val, goal = abs(t["measured"]), abs(t["goal"])
            out.append(f"  {'met ' if t['met'] else 'MISS'} {t['target']}: {val:.3g} "
                       f"(goal {goal:g})")
    return "\n".join(out)


def machine():
    """CPU, core count, Python, platform, git commit, package versions and date."""
    return {"cpu": cpu_name(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "commit": _commit() or "?",
            "versions": _versions(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def cpu_name(cpuinfo="/proc/cpuinfo"):
    """The CPU as /proc/cpuinfo names it, with its family and model numbers and the
    matrix extensions that decide the bf16 roofline, e.g. "AMD EPYC (family 26 model
    2; avx512_bf16, no amx)": vendors reuse one model name across generations."""
    try:
        lines = Path(cpuinfo).read_text().splitlines()
    except OSError:
        return "?"
    info = {}
    for line in lines:
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    flags = set(info.get("flags", "").split())
    ext = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    ext += [] if "amx_bf16" in flags else ["no amx"]
    return (f"{info.get('model name', '?')} (family {info.get('cpu family', '?')} model "
            f"{info.get('model', '?')}; {', '.join(ext)})")


def _commit():
    """The checkout's short commit, marked when tracked files have uncommitted changes."""
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=10).stdout.strip()
    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return commit + (" (uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


def _versions():
    versions = {}
    for pkg in ("jax", "jaxlib", "flax", "optax", "numpy", "torch"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    return versions
