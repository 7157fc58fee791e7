"""What is measured and how: the configs, one worker process per peer speaking
pickles over stdin/stdout, and interleaved timing rounds.

This is the coordinator's side; the worker processes run ``worker.serve``.
"""
import dataclasses
import os
import pickle
import statistics
import subprocess
import sys
from pathlib import Path

from jax_rnnlm.config import ModelConfig

# Multiply-adds per token and layer, in units of H² (D = H): the input and recurrent
# products of the classic cells, the input products alone of the parallel ones.
MACS_PER_H2 = {"rnn": 2, "lstm": 8, "gru": 6, "mingru": 2, "minlstm": 3, "rglru": 3}


@dataclasses.dataclass(frozen=True)
class Spec:
    name: str
    cell: str
    layers: int
    hidden: int
    bptt: int = 35
    dropout: float = 0.0
    tied: bool = False
    batch: int = 20
    matched: str | None = None  # the LSTM config of the same parameter count, to compare with

    def flops_per_token(self, vocab):
        """Forward matmul FLOPs per token (embedding dim = hidden dim)."""
        h = self.hidden
        return self.layers * 2 * MACS_PER_H2[self.cell] * h * h + 2 * h * vocab

    def model_config(self, vocab, dtype="float32"):
        """The jax_rnnlm ModelConfig of this spec (embedding dim = hidden dim)."""
        return ModelConfig(vocab_size=vocab, embed_dim=self.hidden, hidden_dim=self.hidden,
                           num_layers=self.layers, cell=self.cell, dropout=self.dropout,
                           tie_weights=self.tied, dtype=dtype)


CONFIGS = [
    Spec("1 rnn 1x200", "rnn", 1, 200),
    Spec("2 lstm 2x200 T=20", "lstm", 2, 200, bptt=20),
    Spec("3 lstm 2x650 drop.5 tied", "lstm", 2, 650, dropout=0.5, tied=True),
    Spec("4 gru 1x200", "gru", 1, 200),
    # The parallel-in-time cells at the parameter count of configs 2 and 3 (within 0.2%:
    # experiments/parallel_cells_speed.py picks the width); they have no Flax or PyTorch peer.
    Spec("5 mingru 2x222 T=20", "mingru", 2, 222, bptt=20, matched="2 lstm 2x200 T=20"),
    Spec("6 minlstm 2x218 T=20", "minlstm", 2, 218, bptt=20, matched="2 lstm 2x200 T=20"),
    Spec("7 rglru 2x218 T=20", "rglru", 2, 218, bptt=20, matched="2 lstm 2x200 T=20"),
    Spec("8 mingru 2x958 drop.5 tied", "mingru", 2, 958, dropout=0.5, tied=True,
         matched="3 lstm 2x650 drop.5 tied"),
    Spec("9 minlstm 2x870 drop.5 tied", "minlstm", 2, 870, dropout=0.5, tied=True,
         matched="3 lstm 2x650 drop.5 tied"),
    Spec("10 rglru 2x870 drop.5 tied", "rglru", 2, 870, dropout=0.5, tied=True,
         matched="3 lstm 2x650 drop.5 tied"),
]
QUICK = [Spec("tiny lstm 1x16", "lstm", 1, 16, bptt=5, batch=4)]
PEERS = ("jax_rnnlm", "jax_rnnlm-bf16", "flax", "torch")
EVAL_BATCHES = (10, 1)


class Worker:
    """A peer in its own process (a plain subprocess: no dependence on how the
    coordinator was started, fresh thread pools, its own peak RSS)."""

    def __init__(self, peer, spec, corpus, opts):
        self.peer = peer
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # so the worker imports this checkout
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from jax_rnnlm.bench.worker import serve; serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self._send((peer, spec, corpus, opts))
        self.info = None  # set by ready(); workers build and compile in parallel

    def _send(self, msg):
        pickle.dump(msg, self.proc.stdin)
        self.proc.stdin.flush()

    def ready(self):
        self.info = self._reply()
        return self

    def _reply(self):
        try:
            status, value = pickle.load(self.proc.stdout)
        except EOFError:
            raise RuntimeError(f"{self.peer} worker exited with code {self.proc.wait()}")
        if status != "ok":
            raise RuntimeError(value)
        return value

    def ask(self, *cmd):
        self._send(cmd)
        return self._reply()

    def stop(self):
        try:
            self._send(("stop",))
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


def rounds(workers, n, fn, log):
    """n rounds of fn(worker) over all workers, the order rotating each round."""
    out = {w.peer: [] for w in workers}
    for r in range(n):
        order = workers[r % len(workers):] + workers[:r % len(workers)]
        for w in order:
            out[w.peer].append(fn(w))
        log(".")
    return out


def median(xs):
    return statistics.median(xs) if xs else None


def roofline_median(samples):
    """Median of each limit (GFLOP/s per matmul dtype, memory GB/s) over ``samples`` of
    Roofline.gflops."""
    return {k: median([s[k] for s in samples]) for k in samples[0]}


def bench_config(spec, peers, corpus, opts, roof, log):
    """Start a worker per peer, time them in interleaved rounds with the roofline
    worker ``roof``, and return the config's result record. The ratios between
    peers are added by ``report.add_ratios``."""
    log(f"\n{spec.name}: starting {', '.join(peers)} ")
    workers = []
    try:
        workers = [Worker(p, spec, corpus, opts) for p in peers]
        for w in workers:
            w.ready()
            log(f"[{w.peer} ready] ")
        _warm_up(workers)
        train_s = rounds(workers + [roof], opts["repeats"],
                         lambda w: w.ask("gflops") if w is roof else w.ask("train"), log)
        evals = {b: rounds(workers, opts["repeats"], lambda w: w.ask("eval", b), log)
                 for b in EVAL_BATCHES}
        roof_samples = train_s.pop("roofline")
        profile = {w.peer: w.ask("profile", opts["profile"]) for w in workers
                   if opts["profile"] and w.peer.startswith("jax_rnnlm")}
        tokens = opts["windows"] * spec.batch * spec.bptt
        flops = spec.flops_per_token(corpus["vocab"])
        roof_med = roofline_median(roof_samples)
        result = {"config": dataclasses.asdict(spec), "vocab": corpus["vocab"],
                  "train_tokens_per_call": tokens, "forward_flops_per_token": flops,
                  "train_flops_per_token": 3 * flops, "roofline_gflops": roof_med,
                  "roofline_samples": roof_samples, "peers": {}, "profile": profile}
        for w in workers:
            evals_w = {b: evals[b][w.peer] for b in EVAL_BATCHES}
            result["peers"][w.peer] = _peer_record(w, train_s[w.peer], evals_w, tokens,
                                                   flops, roof_med)
        return result
    finally:
        for w in workers:
            w.stop()


def _warm_up(workers):
    """One untimed train chunk and eval each: first-call costs stay out of the rounds."""
    for w in workers:
        w.ask("train")
        for b in EVAL_BATCHES:
            w.ask("eval", b)


def _peer_record(w, train_s, evals, tokens, flops, roof_med):
    """One peer's medians and samples, compile times, peak memory and MFU.

    ``train_s``: seconds per train chunk of ``tokens`` tokens; ``evals``: eval
    batch -> [(seconds, tokens)]; ``flops``: forward FLOPs per token (training is 3x).
    MFU is against the roofline of the peer's dtype.
    """
    rates = [tokens / s for s in train_s]
    rec = {"train_tokens_per_s": median(rates), "train_samples": rates,
           "compile_s": w.info["compile_s"], "compile_cpu_s": w.info["compile_cpu_s"],
           "first_call_s": w.info["first_call_s"],
           "eval_compile_s": w.info.get("eval_compile_s"),
           "ops_per_step": w.info.get("ops_per_step"),
           "eval_ops_per_step": w.info.get("eval_ops_per_step"),
           "peak_rss_mb": w.ask("rss")}
    for b in EVAL_BATCHES:
        r = [tok / s for s, tok in evals[b]]
        rec[f"eval_b{b}_tokens_per_s"], rec[f"eval_b{b}_samples"] = median(r), r
    roof_key = "bfloat16" if w.peer.endswith("bf16") else "float32"
    rec["mfu"] = rec["train_tokens_per_s"] * 3 * flops / (roof_med[roof_key] * 1e9)
    rec["mfu_vs"] = roof_key
    return rec
