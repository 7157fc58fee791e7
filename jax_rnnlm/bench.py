"""Side-by-side throughput: jax_rnnlm, the same model in Flax's recurrent modules, PyTorch.

    jax-rnnlm bench [--json bench.json]        # or: python experiments/bench.py
    jax-rnnlm bench --quick                    # tiny config, seconds; the smoke test

For each PTB-shaped config (V = 10,000, B = 20) every peer trains and evaluates
on the same real PTB windows. Each peer runs in its own worker process (its own
thread pools, its own peak-memory count); the coordinator interleaves them, one
timed chunk each in turn (A B C A B C ..., the order rotating every round), so
whatever else loads the machine slows every peer alike, and reports medians. A
matmul worker joins every round, so the roofline and MFU are measured under the
same load.

Peers: ``jax_rnnlm`` (float32), ``jax_rnnlm-bf16`` (bf16 matmul operands, fp32
accumulation, fp32 params/loss/optimizer), ``flax`` (flax.linen.RNN with
SimpleCell/LSTMCell/GRUCell, same harness: K windows per jitted call, donated
state) and ``torch`` (nn.Embedding + nn.RNN/LSTM/GRU + nn.Linear + cross_entropy,
eager, when torch is importable). All train with clip-by-global-norm + SGD.

Model FLOPs per token count the matmuls only: forward 2·(D·G·H + H·G·H) per
layer + 2·H·V for the output layer; training is 3x forward.
"""
import argparse
import dataclasses
import importlib.metadata
import json
import os
import pickle
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


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

    def flops_per_token(self, vocab):
        """Forward matmul FLOPs per token (embedding dim = hidden dim)."""
        g, h = GATES[self.cell], self.hidden
        return self.layers * 2 * (h * g * h + h * g * h) + 2 * h * vocab


CONFIGS = [
    Spec("1 rnn 1x200", "rnn", 1, 200),
    Spec("2 lstm 2x200 T=20", "lstm", 2, 200, bptt=20),
    Spec("3 lstm 2x650 drop.5 tied", "lstm", 2, 650, dropout=0.5, tied=True),
    Spec("4 gru 1x200", "gru", 1, 200),
]
QUICK = [Spec("tiny lstm 1x16", "lstm", 1, 16, bptt=5, batch=4)]
PEERS = ("jax_rnnlm", "jax_rnnlm-bf16", "flax", "torch")
EVAL_BATCHES = (10, 1)


# ----------------------------------------------------------------------------- workers

def serve():
    """Worker process: build the peer it is sent, then answer timing requests.

    Requests and replies are pickles on stdin/stdout; anything the frameworks
    print goes to stderr.
    """
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    inp = sys.stdin.buffer

    def send(msg):
        pickle.dump(msg, out)
        out.flush()

    peer, spec, corpus, opts = pickle.load(inp)
    if opts["threads"] < (os.cpu_count() or 1):
        os.sched_setaffinity(0, range(opts["threads"]))  # XLA sizes its pool by affinity
    try:
        impl = {"jax_rnnlm": JaxPeer, "jax_rnnlm-bf16": JaxPeer, "flax": FlaxPeer,
                "torch": TorchPeer, "roofline": Roofline,
                "convergence": Convergence}[peer](peer, spec, corpus, opts)
        send(("ok", impl.info))
        while True:
            cmd, *args = pickle.load(inp)
            if cmd == "stop":
                break
            send(("ok", getattr(impl, cmd)(*args)))
    except Exception as e:  # report, so the coordinator can say which peer failed
        import traceback
        send(("error", f"{peer}: {type(e).__name__}: {e}\n{traceback.format_exc()}"))


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


class _Streams:
    """Train streams [B, L] and the start offsets of the next K windows, cycling over the split."""

    def __init__(self, spec, corpus, k):
        from jax_rnnlm import data
        self.train = data.train_streams(corpus["train"], spec.batch, spec.bptt)
        self.n = data.num_windows(self.train, spec.bptt, full_only=True)
        self.k, self.bptt, self.pos = k, spec.bptt, 0
        self.valid = {b: data.batchify(corpus["valid"], b, source="valid split")
                      for b in EVAL_BATCHES}

    def next_starts(self):
        import numpy as np
        idx = (self.pos + np.arange(self.k)) % self.n
        self.pos = (self.pos + self.k) % self.n
        return (idx * self.bptt).astype(np.int32)

    def eval_windows(self, batch, tokens):
        """Eval streams [b, L] and how many full windows hold about ``tokens`` tokens."""
        s = self.valid[batch]
        n_full = (s.shape[1] - 1) // self.bptt
        return s, max(1, min(n_full, round(tokens / (batch * self.bptt))))


class JaxPeer:
    def __init__(self, peer, spec, corpus, opts):
        import jax
        import jax.numpy as jnp
        from jax_rnnlm import model, train
        from jax_rnnlm.model import ModelConfig
        from jax_rnnlm.train import TrainConfig
        self.jax, self.jnp, self.model, self.train_mod = jax, jnp, model, train
        self.spec, self.opts = spec, opts
        self.dtype = "bfloat16" if peer.endswith("bf16") else "float32"
        self.mcfg = ModelConfig(vocab_size=corpus["vocab"], embed_dim=spec.hidden,
                                hidden_dim=spec.hidden, num_layers=spec.layers, cell=spec.cell,
                                dropout=spec.dropout, tie_weights=spec.tied, dtype=self.dtype)
        self.tcfg = TrainConfig(batch_size=spec.batch, bptt=spec.bptt, lr=1.0, clip=0.25,
                                windows_per_call=opts["windows"])
        tx = train.make_optimizer(self.tcfg)
        self.streams = _Streams(spec, corpus, opts["windows"])
        self.dev = jnp.asarray(self.streams.train)
        self.state = train.init_state(self.mcfg, self.tcfg, tx)
        run = train.make_train_windows(tx, spec.dropout, spec.bptt, dtype=self.dtype)
        starts = jnp.asarray(self.streams.next_starts())
        t, cpu = time.perf_counter(), time.process_time()
        self.run = run.lower(self.state, self.dev, starts).compile()
        compile_s, compile_cpu_s = time.perf_counter() - t, time.process_time() - cpu
        first_s = _timed(lambda: self._call(starts))
        self.evals = {}
        eval_compile = {}
        for b in EVAL_BATCHES:
            s, n = self.streams.eval_windows(b, opts["eval_tokens"])
            args = (self.state.params, self.model.init_carry(self.mcfg, b), jnp.asarray(s),
                    jnp.arange(n, dtype=jnp.int32) * spec.bptt)
            t = time.perf_counter()
            fn = train._window_losses.lower(*args, bptt=spec.bptt, dtype=self.dtype).compile()
            eval_compile[b] = time.perf_counter() - t
            self.evals[b] = (fn, args[1:], n * b * spec.bptt)
        self.info = {"compile_s": compile_s, "compile_cpu_s": compile_cpu_s,
                     "first_call_s": first_s, "eval_compile_s": eval_compile}

    def _call(self, starts):
        self.state, metrics = self.run(self.state, self.dev, starts)
        self.jax.block_until_ready(metrics)

    def train(self):
        starts = self.jnp.asarray(self.streams.next_starts())
        return _timed(lambda: self._call(starts))

    def eval(self, batch):
        fn, args, tokens = self.evals[batch]
        return _timed(lambda: self.jax.block_until_ready(fn(self.state.params, *args))), tokens

    def rss(self):
        return _peak_rss_mb()

    def profile(self, repeats):
        """Seconds per window of each part of a train step (see ``_profile``)."""
        return _profile(self, repeats)


PARTS = ("embedding", "recurrence", "output_matmul", "softmax_ce", "optimizer")


def _profile(peer, repeats):
    """Where a train window's time goes, from an XLA trace of ``repeats`` train calls.

    Each executed HLO op is charged to the part whose ``jax.named_scope`` (set in
    model.py, layers.py and train.py) appears in its op name, forward and
    backward alike; "other" is what no scope covers (window slicing, dropout
    keys, loop bookkeeping). Op times are summed over the runtime's threads,
    so the parts can add up to more than the wall time of the window.
    """
    import tempfile
    from jax.profiler import ProfileData
    jax = peer.jax
    scope = {}
    for line in peer.run.as_text().splitlines():
        m = re.match(r"\s*(?:ROOT )?%(\S+) = .*op_name=\"([^\"]*)\"", line)
        if m:
            found = [p for p in PARTS if re.search(rf"(^|[/(]){p}($|[/)])", m.group(2))]
            scope[m.group(1)] = found[-1] if found else "other"
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d):
            wall = sum(peer.train() for _ in range(repeats))
        xspace = next(Path(d).rglob("*.xplane.pb"))
        events = [ev for plane in ProfileData.from_file(str(xspace)).planes
                  for line in plane.lines if line.name.startswith("tf_XLA")
                  for ev in line.events]
    windows = repeats * peer.opts["windows"]
    parts = dict.fromkeys(PARTS + ("other",), 0.0)
    for ev in events:
        name = ev.name
        if name in scope and not name.startswith(("while", "conditional", "call")):
            parts[scope[name]] += ev.duration_ns / 1e9 / windows
    return {"window_s": wall / windows, "parts_s": parts}


class FlaxPeer:
    def __init__(self, peer, spec, corpus, opts):
        import flax.linen as nn
        import jax
        import jax.numpy as jnp
        import optax
        self.jax, self.jnp, self.spec, self.opts = jax, jnp, spec, opts
        cell_cls = {"rnn": nn.SimpleCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}[spec.cell]
        V, H = corpus["vocab"], spec.hidden

        class FlaxLM(nn.Module):
            @nn.compact
            def __call__(self, carries, x_BT, train):
                embed = nn.Embed(V, H)
                drop = lambda h: nn.Dropout(spec.dropout, deterministic=not train)(h)
                h = drop(embed(x_BT))
                new = []
                for c in carries:
                    c, h = nn.RNN(cell_cls(H), return_carry=True)(h, initial_carry=c)
                    h = drop(h)
                    new.append(c)
                if spec.tied:
                    return embed.attend(h) + self.param("out_b", nn.initializers.zeros, (V,)), new
                return nn.Dense(V)(h), new

        lm = FlaxLM()
        zero = lambda b: [cell_cls(H).initialize_carry(jax.random.key(0), (b, H))
                          for _ in range(spec.layers)]
        self.streams = _Streams(spec, corpus, opts["windows"])
        self.dev = jnp.asarray(self.streams.train)
        x0 = jnp.zeros((spec.batch, spec.bptt), jnp.int32)
        params = lm.init(jax.random.key(0), zero(spec.batch), x0, False)["params"]
        tx = optax.chain(optax.clip_by_global_norm(0.25), optax.sgd(1.0))
        T = spec.bptt

        def window(streams, start, t):
            xy = jax.lax.dynamic_slice_in_dim(streams, start, t + 1, axis=1)
            return xy[:, :-1], xy[:, 1:]

        def run(st, streams, starts):
            def step(st, start):
                params, opt_state, carries, key = st
                x, y = window(streams, start, T)
                key, k = jax.random.split(key)

                def loss(p):
                    logits, new = lm.apply({"params": p}, carries, x, True,
                                           rngs={"dropout": k})
                    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new

                (l, new), g = jax.value_and_grad(loss, has_aux=True)(params)
                updates, opt_state = tx.update(g, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state,
                        jax.lax.stop_gradient(new), key), l
            return jax.lax.scan(step, st, starts)

        def eval_windows(params, carries, streams, starts):
            def body(c, start):
                x, y = window(streams, start, T)
                logits, c = lm.apply({"params": params}, c, x, False)
                return c, optax.softmax_cross_entropy_with_integer_labels(logits, y).sum()
            return jax.lax.scan(body, carries, starts)

        self.state = (params, tx.init(params), zero(spec.batch), jax.random.key(1))
        starts = jnp.asarray(self.streams.next_starts())
        t, cpu = time.perf_counter(), time.process_time()
        self.run = jax.jit(run, donate_argnums=0).lower(self.state, self.dev, starts).compile()
        compile_s, compile_cpu_s = time.perf_counter() - t, time.process_time() - cpu
        first_s = _timed(lambda: self._call(starts))
        self.evals = {}
        for b in EVAL_BATCHES:
            s, n = self.streams.eval_windows(b, opts["eval_tokens"])
            args = (zero(b), jnp.asarray(s), jnp.arange(n, dtype=jnp.int32) * T)
            fn = jax.jit(eval_windows).lower(self.state[0], *args).compile()
            self.evals[b] = (fn, args, n * b * T)
        self.info = {"compile_s": compile_s, "compile_cpu_s": compile_cpu_s,
                     "first_call_s": first_s}

    def _call(self, starts):
        self.state, losses = self.run(self.state, self.dev, starts)
        self.jax.block_until_ready(losses)

    def train(self):
        starts = self.jnp.asarray(self.streams.next_starts())
        return _timed(lambda: self._call(starts))

    def eval(self, batch):
        fn, args, tokens = self.evals[batch]
        return _timed(lambda: self.jax.block_until_ready(fn(self.state[0], *args))), tokens

    def rss(self):
        return _peak_rss_mb()


class TorchPeer:
    def __init__(self, peer, spec, corpus, opts):
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
        torch.set_num_threads(opts["threads"])
        torch.manual_seed(0)
        self.torch, self.F, self.spec, self.opts = torch, F, spec, opts
        V, H, L = corpus["vocab"], spec.hidden, spec.layers
        rnn_cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[spec.cell]

        class TorchLM(nn.Module):
            def __init__(self):
                super().__init__()
                self.embed = nn.Embedding(V, H)
                self.rnn = rnn_cls(H, H, L, dropout=spec.dropout if L > 1 else 0.0,
                                   batch_first=True)
                self.drop = nn.Dropout(spec.dropout)
                self.out = nn.Linear(H, V)
                if spec.tied:
                    self.out.weight = self.embed.weight

            def forward(self, x, h):
                o, h = self.rnn(self.drop(self.embed(x)), h)
                return self.out(self.drop(o)), h

        self.m = TorchLM()
        self.opt = torch.optim.SGD(self.m.parameters(), lr=1.0)
        self.streams = _Streams(spec, corpus, opts["windows"])
        self.train_ids = torch.from_numpy(self.streams.train.astype("int64"))
        self.h = self._zero(spec.batch)
        self.V = V
        first_s = _timed(self.train)
        self.info = {"compile_s": None, "compile_cpu_s": None, "first_call_s": first_s}

    def _zero(self, b):
        z = self.torch.zeros(self.spec.layers, b, self.spec.hidden)
        return (z, z.clone()) if self.spec.cell == "lstm" else z

    def _detach(self, h):
        return tuple(a.detach() for a in h) if isinstance(h, tuple) else h.detach()

    def train(self):
        torch, F, T = self.torch, self.F, self.spec.bptt
        self.m.train()
        t = time.perf_counter()
        for start in self.streams.next_starts().tolist():
            x = self.train_ids[:, start:start + T]
            y = self.train_ids[:, start + 1:start + T + 1]
            self.h = self._detach(self.h)
            self.opt.zero_grad()
            logits, self.h = self.m(x, self.h)
            loss = F.cross_entropy(logits.reshape(-1, self.V), y.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.m.parameters(), 0.25)
            self.opt.step()
        loss.item()
        return time.perf_counter() - t

    def eval(self, batch):
        torch, F, T = self.torch, self.F, self.spec.bptt
        s, n = self.streams.eval_windows(batch, self.opts["eval_tokens"])
        ids = torch.from_numpy(s.astype("int64"))
        self.m.eval()
        t = time.perf_counter()
        with torch.inference_mode():
            h, total = self._zero(batch), 0.0
            for k in range(n):
                logits, h = self.m(ids[:, k * T:(k + 1) * T], h)
                total += F.cross_entropy(logits.reshape(-1, self.V),
                                         ids[:, k * T + 1:(k + 1) * T + 1].reshape(-1),
                                         reduction="sum").item()
        return time.perf_counter() - t, n * batch * T

    def rss(self):
        return _peak_rss_mb()


class Roofline:
    """Large jitted matmuls: fp32, and bf16 operands with fp32 accumulation."""

    def __init__(self, peer, spec, corpus, opts):
        import jax
        import jax.numpy as jnp
        n = opts["matmul_size"]
        self.jax, self.n = jax, n
        k1, k2 = jax.random.split(jax.random.key(0))
        a = jax.random.normal(k1, (n, n), jnp.float32)
        b = jax.random.normal(k2, (n, n), jnp.float32)
        f32 = jax.jit(lambda a, b: a @ b)
        bf16 = jax.jit(lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32))
        self.fns = {"float32": (f32, (a, b)),
                    "bfloat16": (bf16, (a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)))}
        for fn, args in self.fns.values():
            jax.block_until_ready(fn(*args))
        self.info = {"size": n}

    def gflops(self):
        out = {}
        for name, (fn, args) in self.fns.items():
            t = min(_timed(lambda: self.jax.block_until_ready(fn(*args))) for _ in range(2))
            out[name] = 2 * self.n ** 3 / t / 1e9
        return out

    def rss(self):
        return _peak_rss_mb()


def convergence(corpus, windows, opts):
    """Val perplexity after the same ``windows`` train steps of config 2: fp32 and
    bf16 from seed 0, and fp32 from seed 1 as the yardstick of run-to-run spread."""
    import jax.numpy as jnp
    from jax_rnnlm import data, train
    from jax_rnnlm.model import ModelConfig
    from jax_rnnlm.train import TrainConfig
    spec = CONFIGS[1]
    out = {"config": spec.name, "windows": windows, "lr": 20.0, "clip": 0.25}
    for name, dtype, seed in (("float32", "float32", 0), ("bfloat16", "bfloat16", 0),
                              ("float32_seed1", "float32", 1)):
        mcfg = ModelConfig(vocab_size=corpus["vocab"], embed_dim=spec.hidden,
                           hidden_dim=spec.hidden, num_layers=spec.layers, cell=spec.cell,
                           dtype=dtype)
        tcfg = TrainConfig(batch_size=spec.batch, bptt=spec.bptt, lr=20.0, clip=0.25, seed=seed)
        tx = train.make_optimizer(tcfg)
        state = train.init_state(mcfg, tcfg, tx)
        streams = data.train_streams(corpus["train"], spec.batch, spec.bptt)
        n = data.num_windows(streams, spec.bptt, full_only=True)
        dev = jnp.asarray(streams)
        run = train.make_train_windows(tx, 0.0, spec.bptt, dtype=dtype)
        t = time.perf_counter()
        for i in range(0, windows, 10):
            idx = (i + jnp.arange(min(10, windows - i), dtype=jnp.int32)) % n
            state, metrics = run(state, dev, idx * spec.bptt)
        loss = float(metrics["loss"][-1])
        ppl, _ = train.evaluate(state.params, mcfg, corpus["valid"], batch_size=10,
                                bptt=spec.bptt)
        out[name] = {"val_ppl": ppl, "last_train_loss": loss,
                     "wall_s": time.perf_counter() - t}
    fp32 = out["float32"]["val_ppl"]
    out["relative_difference"] = out["bfloat16"]["val_ppl"] / fp32 - 1
    out["seed_spread"] = out["float32_seed1"]["val_ppl"] / fp32 - 1
    return out


class Convergence:
    def __init__(self, peer, spec, corpus, opts):
        self.info = convergence(corpus, opts["convergence"], opts)


# ----------------------------------------------------------------------------- coordinator

class Worker:
    """A peer in its own process (a plain subprocess: no dependence on how the
    coordinator was started, fresh thread pools, its own peak RSS)."""

    def __init__(self, peer, spec, corpus, opts):
        self.peer = peer
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from jax_rnnlm.bench import serve; serve()"],
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


def _rounds(workers, n, fn, log):
    """n rounds of fn(worker) over all workers, the order rotating each round."""
    out = {w.peer: [] for w in workers}
    for r in range(n):
        order = workers[r % len(workers):] + workers[:r % len(workers)]
        for w in order:
            out[w.peer].append(fn(w))
        log(".")
    return out


def _median(xs):
    return statistics.median(xs) if xs else None


def bench_config(spec, peers, corpus, opts, roof, log):
    log(f"\n{spec.name}: starting {', '.join(peers)} ")
    workers = []
    try:
        workers = [Worker(p, spec, corpus, opts) for p in peers]
        for w in workers:
            w.ready()
            log(f"[{w.peer} ready] ")
        tokens = opts["windows"] * spec.batch * spec.bptt
        for w in workers:  # warm-up: one untimed train chunk and eval each
            w.ask("train")
            for b in EVAL_BATCHES:
                w.ask("eval", b)
        train_s = _rounds(workers + [roof], opts["repeats"],
                          lambda w: w.ask("gflops") if w is roof else w.ask("train"), log)
        evals = {b: _rounds(workers, opts["repeats"], lambda w: w.ask("eval", b), log)
                 for b in EVAL_BATCHES}
        roof_samples = train_s.pop("roofline")
        profile = None
        if opts["profile"] and "jax_rnnlm" in peers:
            profile = workers[peers.index("jax_rnnlm")].ask("profile", opts["profile"])
        flops = spec.flops_per_token(corpus["vocab"])
        roof_med = {k: _median([s[k] for s in roof_samples]) for k in ("float32", "bfloat16")}
        result = {"config": dataclasses.asdict(spec), "vocab": corpus["vocab"],
                  "train_tokens_per_call": tokens, "forward_flops_per_token": flops,
                  "train_flops_per_token": 3 * flops, "roofline_gflops": roof_med,
                  "roofline_samples": roof_samples, "peers": {}, "profile": profile}
        for w in workers:
            rates = [tokens / s for s in train_s[w.peer]]
            rec = {"train_tokens_per_s": _median(rates), "train_samples": rates,
                   "compile_s": w.info["compile_s"], "compile_cpu_s": w.info["compile_cpu_s"],
                   "first_call_s": w.info["first_call_s"],
                   "eval_compile_s": w.info.get("eval_compile_s"),
                   "peak_rss_mb": w.ask("rss")}
            for b in EVAL_BATCHES:
                r = [tok / s for s, tok in evals[b][w.peer]]
                rec[f"eval_b{b}_tokens_per_s"], rec[f"eval_b{b}_samples"] = _median(r), r
            roof_key = "bfloat16" if w.peer.endswith("bf16") else "float32"
            rec["mfu"] = rec["train_tokens_per_s"] * 3 * flops / (roof_med[roof_key] * 1e9)
            rec["mfu_vs"] = roof_key
            result["peers"][w.peer] = rec
        _add_ratios(result)
        return result
    finally:
        for w in workers:
            w.stop()


def _add_ratios(result):
    peers = result["peers"]
    for name, rec in peers.items():
        for ref in ("torch", "flax"):
            if ref in peers and ref != name:
                for key in ("train", "eval_b10", "eval_b1"):
                    rec[f"{key}_x_{ref}"] = (rec[f"{key}_tokens_per_s"]
                                             / peers[ref][f"{key}_tokens_per_s"])


def targets(results, conv):
    """The issue's targets, each with its measured value and whether it is met."""
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
    if conv:
        add("bf16 val ppl within 1% of fp32 (|rel diff|)", -abs(conv["relative_difference"]),
            -0.01)
    return out


def format_table(results):
    head = ["config", "peer", "train tok/s", "x torch", "x flax", "eval b10", "x torch",
            "eval b1", "x torch", "MFU", "compile s", "peak MB"]
    rows = []
    f = lambda v, fmt: "-" if v is None else format(v, fmt)
    for r in results:
        for peer, rec in r["peers"].items():
            rows.append([r["config"]["name"], peer, f(rec["train_tokens_per_s"], ",.0f"),
                         f(rec.get("train_x_torch"), ".2f"), f(rec.get("train_x_flax"), ".2f"),
                         f(rec["eval_b10_tokens_per_s"], ",.0f"),
                         f(rec.get("eval_b10_x_torch"), ".2f"),
                         f(rec["eval_b1_tokens_per_s"], ",.0f"),
                         f(rec.get("eval_b1_x_torch"), ".2f"),
                         f"{rec['mfu']:.0%} " + ("bf16" if rec["mfu_vs"] == "bfloat16" else "fp32"),
                         f(rec["compile_s"], ".1f"), f(rec["peak_rss_mb"], ",.0f")])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line(row) for row in rows])


def format_profile(results):
    lines = []
    for r in results:
        p = r.get("profile")
        if not p:
            continue
        busy = sum(p["parts_s"].values())
        parts = ", ".join(f"{k} {v * 1e3:.1f} ms ({v / busy:.0%})"
                          for k, v in p["parts_s"].items())
        lines.append(f"{r['config']['name']}: wall {p['window_s'] * 1e3:.1f} ms per window; "
                     f"op time {busy * 1e3:.1f} ms = {parts}")
    return "\n".join(lines)


def machine():
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=Path(__file__).parent, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, cwd=Path(__file__).parent,
                               timeout=10).stdout.strip()
        commit += " (uncommitted changes)" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    versions = {}
    for pkg in ("jax", "jaxlib", "flax", "optax", "numpy", "torch"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "commit": commit or "?", "versions": versions,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def _load_corpus(args):
    from jax_rnnlm import data
    if args.quick and args.data is None:
        import numpy as np
        rng = np.random.default_rng(0)  # Zipf-ish ids: no files needed for the smoke test
        ids = lambda n: (rng.zipf(1.3, n) % 50).astype(np.int32)
        return {"vocab": 50, "train": ids(2000), "valid": ids(400), "source": "synthetic"}
    corpus = data.load_corpus(args.data or "ptb")
    return {"vocab": len(corpus.vocab), "train": corpus.train, "valid": corpus.valid,
            "source": corpus.source}


def build_parser():
    p = argparse.ArgumentParser(prog="jax-rnnlm bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="tiny config and few repeats (seconds; synthetic ids unless --data)")
    p.add_argument("--configs", default=None,
                   help="comma-separated config numbers 1-4 (default: all)")
    p.add_argument("--peers", default=None,
                   help=f"comma-separated subset of {','.join(PEERS)} (default: all; "
                        f"torch only if importable)")
    p.add_argument("--data", default=None, help="corpus (default: ptb from $JAX_RNNLM_DATA)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 7; quick 2)")
    p.add_argument("--windows", type=int, default=10,
                   help="train windows per timed chunk = per jitted call (default 10)")
    p.add_argument("--eval-tokens", type=int, default=None,
                   help="about this many tokens per timed evaluation (default 7000)")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="threads for every peer (default: all cores)")
    p.add_argument("--matmul-size", type=int, default=None,
                   help="n of the n x n x n roofline matmul (default 2048)")
    p.add_argument("--profile", type=int, default=None,
                   help="repeats of the per-part profile of jax_rnnlm (0: skip; default 5)")
    p.add_argument("--convergence", type=int, default=None,
                   help="train config 2 this many windows in fp32 and bf16 and compare "
                        "val perplexity (0: skip; default 400)")
    p.add_argument("--json", default=None, help="write the full results here")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    quick = args.quick
    specs = QUICK if quick else CONFIGS
    if args.configs:
        specs = [CONFIGS[int(c) - 1] for c in args.configs.split(",")]
    peers = args.peers.split(",") if args.peers else list(PEERS)
    for p in peers:
        if p not in PEERS:
            print(f"jax-rnnlm bench: unknown peer {p!r}; choose from {PEERS}", file=sys.stderr)
            return 2
    try:
        import importlib.util
        has_torch = importlib.util.find_spec("torch") is not None
    except ValueError:
        has_torch = False
    if "torch" in peers and not has_torch:
        peers.remove("torch")
        print("torch is not importable: benchmarking without it "
              "(pip install 'jax_rnnlm[bench]')", file=sys.stderr)
    opts = {"threads": args.threads, "windows": args.windows,
            "repeats": args.repeats or (2 if quick else 7),
            "eval_tokens": args.eval_tokens or (200 if quick else 7000),
            "matmul_size": args.matmul_size or (256 if quick else 2048),
            "profile": args.profile if args.profile is not None else (0 if quick else 5)}
    conv_windows = args.convergence if args.convergence is not None else (0 if quick else 400)
    log = lambda s: print(s, end="", file=sys.stderr, flush=True)
    from jax_rnnlm import data
    try:
        corpus = _load_corpus(args)
    except data.DataError as e:
        print(f"jax-rnnlm bench: error: {e}", file=sys.stderr)
        return 2
    meta = machine()
    meta.update(threads=args.threads, load_avg_start=os.getloadavg(), corpus=corpus["source"],
                command="jax-rnnlm bench " + " ".join(argv if argv is not None else sys.argv[1:]),
                opts=opts, peers=peers)
    t0 = time.perf_counter()
    roof = Worker("roofline", specs[0], corpus, opts).ready()
    results = []
    try:
        for spec in specs:
            results.append(bench_config(spec, peers, corpus, opts, roof, log))
            log("\n" + format_table(results[-1:]) + "\n")  # long runs: show each config now
            if args.json:  # and keep what is done should a later config fail
                Path(args.json).write_text(json.dumps(
                    {"meta": meta, "results": results, "partial": True}, indent=1) + "\n")
    finally:
        roof.stop()
    conv = None
    if conv_windows and "jax_rnnlm" in peers:
        log(f"\nconvergence: {conv_windows} windows of config 2, fp32 and bf16 ")
        w = Worker("convergence", CONFIGS[1], corpus, dict(opts, convergence=conv_windows))
        conv = w.ready().info
        w.stop()
    meta.update(load_avg_end=os.getloadavg(), wall_s=time.perf_counter() - t0)
    roof_all = [s for r in results for s in r["roofline_samples"]]
    roofline = {k: _median([s[k] for s in roof_all]) for k in ("float32", "bfloat16")}
    report = {"meta": meta, "roofline_gflops": roofline, "results": results,
              "convergence": conv, "targets": targets(results, conv)}
    log("\n")
    print(f"jax_rnnlm bench — {meta['cpu']}, {args.threads} threads, "
          f"commit {meta['commit']}, {meta['date']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v))
    print(f"roofline (median, {opts['matmul_size']}^3 jitted matmul): fp32 "
          f"{roofline['float32']:.0f} GFLOP/s, bf16 {roofline['bfloat16']:.0f} GFLOP/s; "
          f"load average {meta['load_avg_start'][0]:.1f} at start, "
          f"{meta['load_avg_end'][0]:.1f} at end")
    print(f"median of {opts['repeats']} interleaved rounds; train chunk = {opts['windows']} "
          f"windows; tokens/s; MFU = model matmul FLOP/s / roofline of the same dtype\n")
    print(format_table(results))
    prof = format_profile(results)
    if prof:
        print("\nprofile (jax_rnnlm fp32, per train window):\n" + prof)
    if conv:
        print(f"\nconvergence ({conv['config']}, {conv['windows']} windows, lr 20): val ppl "
              f"fp32 {conv['float32']['val_ppl']:.2f}, bf16 {conv['bfloat16']['val_ppl']:.2f} "
              f"({conv['relative_difference']:+.2%}); fp32 from another seed "
              f"{conv['float32_seed1']['val_ppl']:.2f} ({conv['seed_spread']:+.2%})")
    if report["targets"]:
        print("\ntargets:")
        for t in report["targets"]:
            val, goal = abs(t["measured"]), abs(t["goal"])
            print(f"  {'met ' if t['met'] else 'MISS'} {t['target']}: {val:.3g} "
                  f"(goal {goal:g})")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
