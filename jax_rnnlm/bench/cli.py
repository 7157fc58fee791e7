"""``jax-rnnlm bench``: the flags, the corpus, and the run from the first config
to the printed report."""
import argparse
import dataclasses
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from jax_rnnlm import cells, data, tokenizer
from jax_rnnlm.settings import Parser, int_at_least
from jax_rnnlm.bench import harness, report


def config_numbers(text):
    """--configs: comma-separated numbers of harness.CONFIGS, 1-based."""
    n = len(harness.CONFIGS)
    try:
        numbers = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        numbers = []
    if not numbers or not all(1 <= c <= n for c in numbers):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers in 1-{n}, "
                                         f"got {text!r}")
    return numbers


def build_parser():
    p = Parser(
        prog="jax-rnnlm bench", description="Side-by-side throughput: jax_rnnlm, the same "
        "model in Flax's recurrent modules, PyTorch.")
    p.add_argument("--quick", action="store_true",
                   help="tiny config and few repeats (seconds; synthetic ids unless --data)")
    p.add_argument("--configs", default=None, type=config_numbers,
                   help="comma-separated config numbers: 1-4 the classic cells against Flax "
                        "and PyTorch, 5-10 the parallel-in-time cells at the parameter count "
                        "of configs 2 and 3 (against them when they run too; default: 1-4)")
    p.add_argument("--peers", default=None,
                   help=f"comma-separated subset of {','.join(harness.PEERS)} (default: all; "
                        f"torch only if importable)")
    p.add_argument("--data", default=None, help="corpus (default: ptb from $JAX_RNNLM_DATA)")
    p.add_argument("--repeats", type=int_at_least(1), default=None, help="timed rounds (default 7; quick 2)")
    p.add_argument("--windows", type=int_at_least(1), default=10,
                   help="train windows per timed chunk = per jitted call (default 10)")
    p.add_argument("--eval-tokens", type=int_at_least(1), default=None,
                   help="about this many tokens per timed evaluation (default 7000)")
    p.add_argument("--threads", type=int_at_least(1), default=os.cpu_count(),
                   help="threads for every peer (default: all cores)")
    p.add_argument("--matmul-size", type=int_at_least(1), default=None,
                   help="n of the n x n x n roofline matmul (default 2048)")
    p.add_argument("--profile", type=int_at_least(0), default=None,
                   help="repeats of the per-part profile of jax_rnnlm (0: skip; default 5)")
    p.add_argument("--convergence", type=int_at_least(0), default=None,
                   help="train config 2 this many windows in fp32 and bf16 and compare "
                        "val perplexity (0: skip; default 400)")
    p.add_argument("--batch-size", type=int_at_least(1), default=None,
                   help="B of every config (default: each config's, 20)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="where the torch peer runs (cuDNN on gpu); the JAX peers use JAX's "
                        "default backend")
    p.add_argument("--stream-mb", type=int_at_least(1), default=None,
                   help="MB of the memory-bandwidth probe of the roofline (default 256)")
    p.add_argument("--json", default=None, help="write the full results here")
    return p


def load_corpus(args):
    """{"vocab", "train", "valid", "source"}: synthetic ids for --quick without --data."""
    if args.quick and args.data is None:
        rng = np.random.default_rng(0)  # Zipf-ish ids: no files needed for the smoke test
        ids = lambda n: (rng.zipf(1.3, n) % 50).astype(np.int32)
        return {"vocab": 50, "train": ids(2000), "valid": ids(400), "source": "synthetic"}
    corpus = data.load_corpus(args.data or "ptb")
    return {"vocab": len(corpus.vocab), "train": corpus.train, "valid": corpus.valid,
            "source": corpus.source}


def _specs(args):
    specs = harness.QUICK if args.quick else harness.CONFIGS[:4]
    if args.configs:
        specs = [harness.CONFIGS[c - 1] for c in args.configs]
    if args.batch_size:
        specs = [dataclasses.replace(s, batch=args.batch_size) for s in specs]
    return specs


def _peers(names):
    """The peers to run, or None after saying which one is unknown. torch is left
    out, with a note, when it is not importable: it is an optional dependency."""
    peers = names.split(",") if names else list(harness.PEERS)
    for p in peers:
        if p not in harness.PEERS:
            print(f"jax-rnnlm bench: unknown peer {p!r}; choose from {harness.PEERS}",
                  file=sys.stderr)
            return None
    try:
        has_torch = importlib.util.find_spec("torch") is not None
    except ValueError:
        has_torch = False
    if "torch" in peers and not has_torch:
        peers.remove("torch")
        print("torch is not importable: benchmarking without it "
              "(pip install 'jax_rnnlm[bench]')", file=sys.stderr)
    return peers


def _options(args):
    """What the workers need to know, with the --quick defaults applied."""
    quick = args.quick
    return {"threads": args.threads, "windows": args.windows,
            "repeats": args.repeats or (2 if quick else 7),
            "eval_tokens": args.eval_tokens or (200 if quick else 7000),
            "matmul_size": args.matmul_size or (256 if quick else 2048),
            "profile": args.profile if args.profile is not None else (0 if quick else 5),
            "device": args.device,
            "stream_mb": args.stream_mb or (16 if quick else 256)}


def _write_json(path, obj):
    Path(path).write_text(json.dumps(obj, indent=1) + "\n")


def _bench_all(specs, peers, corpus, opts, meta, json_path, log):
    """Every config in turn, with one roofline worker timed alongside them all."""
    roof = harness.Worker("roofline", specs[0], corpus, opts).ready()
    results = []
    try:
        for spec in specs:
            mine = peers if not cells.CELLS[spec.cell].parallel else \
                [p for p in peers if p.startswith("jax_rnnlm")]  # no Flax or torch cell of it
            result = harness.bench_config(spec, mine, corpus, opts, roof, log)
            results.append(report.add_ratios(result, results))
            log("\n" + report.format_table(results[-1:]) + "\n")  # long runs: show each config now
            if json_path:  # and keep what is done should a later config fail
                _write_json(json_path, {"meta": meta, "results": results, "partial": True})
    finally:
        roof.stop()
    return results


def _convergence(windows, corpus, opts, log):
    """The fp32 vs bf16 convergence runs of config 2, in a worker of their own."""
    log(f"\nconvergence: {windows} windows of config 2, fp32 and bf16 ")
    w = harness.Worker("convergence", harness.CONFIGS[1], corpus,
                       dict(opts, convergence=windows))
    conv = w.ready().info
    w.stop()
    return conv


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.json and not Path(args.json).absolute().parent.is_dir():
        print(f"jax-rnnlm bench: error: --json {args.json}: its folder does not exist",
              file=sys.stderr)
        return 2
    specs = _specs(args)
    peers = _peers(args.peers)
    if peers is None:
        return 2
    opts = _options(args)
    conv_windows = (args.convergence if args.convergence is not None
                    else (0 if args.quick else 400))
    log = lambda s: print(s, end="", file=sys.stderr, flush=True)
    try:
        corpus = load_corpus(args)
    except tokenizer.DataError as e:
        print(f"jax-rnnlm bench: error: {e}", file=sys.stderr)
        return 2
    meta = report.machine()
    meta.update(threads=args.threads, load_avg_start=os.getloadavg(), corpus=corpus["source"],
                command="jax-rnnlm bench " + " ".join(argv if argv is not None else sys.argv[1:]),
                opts=opts, peers=peers)
    t0 = time.perf_counter()
    results = _bench_all(specs, peers, corpus, opts, meta, args.json, log)
    conv = None
    if conv_windows and "jax_rnnlm" in peers:
        conv = _convergence(conv_windows, corpus, opts, log)
    meta.update(load_avg_end=os.getloadavg(), wall_s=time.perf_counter() - t0)
    roofline = harness.roofline_median([s for r in results for s in r["roofline_samples"]])
    full = {"meta": meta, "roofline_gflops": roofline, "results": results,
            "convergence": conv, "targets": report.targets(results, conv)}
    log("\n")
    print(report.format_report(full))
    if args.json:
        _write_json(args.json, full)
    return 0
