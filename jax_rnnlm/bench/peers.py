"""The benchmarked implementations, each built inside its own worker process.

``JaxPeer`` (jax_rnnlm, fp32 or bf16) and ``FlaxPeer`` (the same model in
flax.linen) share ``JitPeer``: W train windows per AOT-compiled call with the
state donated, and one compiled eval scan per eval batch size, so the two differ
only in the model and train step they compile. ``TorchPeer`` runs PyTorch
eagerly; ``Roofline`` times large matmuls. flax.linen and torch, the peers'
frameworks, load only in the worker that runs them (torch is optional).

Every model peer answers ``train()`` (seconds for one chunk of W windows), ``eval(b)``
((seconds, tokens) for about ``eval_tokens`` tokens at batch b) and ``rss()``.
"""
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax_rnnlm import data, model, optim, step
from jax_rnnlm.bench import ops, profile
from jax_rnnlm.bench.harness import EVAL_BATCHES


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


class Streams:
    """Train streams [B, L] and the start offsets of the next W windows, cycling over
    the split; valid streams [b, L] for each eval batch size b."""

    def __init__(self, spec, corpus, windows):
        self.train_BL = data.train_streams(corpus["train"], spec.batch, spec.bptt)
        self.n = data.num_windows(self.train_BL, spec.bptt, full_only=True)
        self.w, self.bptt, self.pos = windows, spec.bptt, 0
        self.valid = {b: data.batchify(corpus["valid"], b, source="valid split")
                      for b in EVAL_BATCHES}

    def next_starts(self):
        """Start offsets [W] of the next W full windows, int32."""
        idx = (self.pos + np.arange(self.w)) % self.n
        self.pos = (self.pos + self.w) % self.n
        return (idx * self.bptt).astype(np.int32)

    def eval_windows(self, batch, tokens):
        """Eval streams [b, L] and how many full windows hold about ``tokens`` tokens."""
        s_BL = self.valid[batch]
        n_full = (s_BL.shape[1] - 1) // self.bptt
        return s_BL, max(1, min(n_full, round(tokens / (batch * self.bptt))))


class Peer:
    def rss(self):
        """Peak resident memory of this worker process in MB (ru_maxrss is in KiB on Linux)."""
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class JitPeer(Peer):
    """A JAX peer. A subclass sets ``self.state``, says where its params are
    (``params``), then calls ``_compile_train`` and ``_compile_evals``."""

    def __init__(self, spec, corpus, opts):
        self.spec, self.opts = spec, opts
        self.streams = Streams(spec, corpus, opts["windows"])
        self.dev_BL = jnp.asarray(self.streams.train_BL)  # on device once, sliced there

    def params(self):
        raise NotImplementedError

    def _compile_train(self, run):
        """AOT-compile the jitted ``run(state, streams [B, L], starts [W])``, so
        compile time is measured apart from the first call; returns the timings."""
        starts_W = jnp.asarray(self.streams.next_starts())
        t, cpu = time.perf_counter(), time.process_time()
        self.run = run.lower(self.state, self.dev_BL, starts_W).compile()
        compile_s, compile_cpu_s = time.perf_counter() - t, time.process_time() - cpu
        return {"compile_s": compile_s, "compile_cpu_s": compile_cpu_s,
                "ops_per_step": ops.ops_per_layer_step(self.run.as_text(), self.spec.layers,
                                                       self.spec.bptt),
                "first_call_s": _timed(lambda: self._call(starts_W))}

    def _compile_evals(self, lower_eval, zero_carry):
        """AOT-compile ``lower_eval(params, carry, streams [b, L], starts [W])`` for
        each eval batch size b, on about ``eval_tokens`` tokens of the valid split;
        returns the compile seconds per b. Call after ``_compile_train``."""
        T = self.spec.bptt
        self.evals, compile_s = {}, {}
        for b in EVAL_BATCHES:
            s_BL, n = self.streams.eval_windows(b, self.opts["eval_tokens"])
            args = (zero_carry(b), jnp.asarray(s_BL), jnp.arange(n, dtype=jnp.int32) * T)
            t = time.perf_counter()
            fn = lower_eval(self.params(), *args).compile()
            compile_s[b] = time.perf_counter() - t
            self.evals[b] = (fn, args, n * b * T)
        self.info["eval_ops_per_step"] = ops.ops_per_layer_step(self.evals[10][0].as_text(),
                                                                self.spec.layers, T)
        return compile_s

    def _call(self, starts_W):
        self.state, metrics = self.run(self.state, self.dev_BL, starts_W)
        jax.block_until_ready(metrics)

    def train(self):
        starts_W = jnp.asarray(self.streams.next_starts())  # host->device outside the timing
        return _timed(lambda: self._call(starts_W))

    def eval(self, batch):
        fn, args, tokens = self.evals[batch]
        return _timed(lambda: jax.block_until_ready(fn(self.params(), *args))), tokens


class JaxPeer(JitPeer):
    """jax_rnnlm through step.py; a peer name ending in "bf16" selects bf16 matmuls."""

    def __init__(self, peer, spec, corpus, opts):
        super().__init__(spec, corpus, opts)
        mcfg = spec.model_config(corpus["vocab"],
                                 "bfloat16" if peer.endswith("bf16") else "float32")
        tx = optim.make_optimizer("sgd", 1.0, 0.25)
        self.state = step.init_state(jax.random.key(0), mcfg, tx, spec.batch)
        self.info = self._compile_train(step.jit_train_windows(mcfg, tx, spec.bptt))
        self.info["eval_compile_s"] = self._compile_evals(
            lambda params, *args: step.eval_windows.lower(params, mcfg, *args, spec.bptt),
            lambda b: model.init_carry(mcfg, b))

    def params(self):
        return self.state.params

    def profile(self, repeats):
        """Seconds per window of each part of a train step (see ``profile.window_parts``)."""
        return profile.window_parts(self, repeats)


class FlaxPeer(JitPeer):
    """The same model in flax.linen (nn.RNN over SimpleCell/LSTMCell/GRUCell) with
    optax clip + SGD, through the same harness as JaxPeer."""

    def __init__(self, peer, spec, corpus, opts):
        super().__init__(spec, corpus, opts)
        lm, zero = _flax_lm(spec, corpus["vocab"])
        x0_BT = jnp.zeros((spec.batch, spec.bptt), jnp.int32)
        params = lm.init(jax.random.key(0), zero(spec.batch), x0_BT, False)["params"]
        tx = optax.chain(optax.clip_by_global_norm(0.25), optax.sgd(1.0))
        run, eval_windows = _flax_steps(lm, tx, spec.bptt)
        self.state = (params, tx.init(params), zero(spec.batch), jax.random.key(1))
        self.info = self._compile_train(jax.jit(run, donate_argnums=0))
        self._compile_evals(jax.jit(eval_windows).lower, zero)

    def params(self):
        return self.state[0]


def _flax_lm(spec, V):
    """The Flax language model of ``spec``, and zero carries for a batch size."""
    import flax.linen as nn  # the peer's own framework, loaded in its worker only
    cell_cls = {"rnn": nn.SimpleCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}[spec.cell]
    H = spec.hidden

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

    zero = lambda b: [cell_cls(H).initialize_carry(jax.random.key(0), (b, H))
                      for _ in range(spec.layers)]
    return FlaxLM(), zero


def _flax_steps(lm, tx, T):
    """Flax's train scan (state, streams [B, L], starts [W]) -> (state, losses [W]) and
    eval scan (params, carries, streams, starts) -> (carries, sums [W]), unjitted."""

    def window(streams_BL, start):
        xy = jax.lax.dynamic_slice_in_dim(streams_BL, start, T + 1, axis=1)
        return xy[:, :-1], xy[:, 1:]

    def run(st, streams_BL, starts_W):
        def step(st, start):
            params, opt_state, carries, key = st
            x, y = window(streams_BL, start)
            key, k = jax.random.split(key)

            def loss(p):
                logits, new = lm.apply({"params": p}, carries, x, True, rngs={"dropout": k})
                return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new

            (l, new), g = jax.value_and_grad(loss, has_aux=True)(params)
            updates, opt_state = tx.update(g, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state,
                    jax.lax.stop_gradient(new), key), l
        return jax.lax.scan(step, st, starts_W)

    def eval_windows(params, carries, streams_BL, starts_W):
        def body(c, start):
            x, y = window(streams_BL, start)
            logits, c = lm.apply({"params": params}, c, x, False)
            return c, optax.softmax_cross_entropy_with_integer_labels(logits, y).sum()
        return jax.lax.scan(body, carries, starts_W)

    return run, eval_windows


class TorchPeer(Peer):
    """nn.Embedding + nn.RNN/LSTM/GRU + nn.Linear + cross_entropy, eager, one
    optimizer step per window: what a PyTorch user would write."""

    def __init__(self, peer, spec, corpus, opts):
        import torch
        import torch.nn.functional as F
        torch.set_num_threads(opts["threads"])
        torch.manual_seed(0)
        self.torch, self.F, self.spec, self.opts = torch, F, spec, opts
        # on a GPU, nn.RNN/LSTM/GRU run cuDNN's fused kernels
        self.device = torch.device("cuda" if opts.get("device") == "gpu" else "cpu")
        self.m = torch_lm(spec, corpus["vocab"]).to(self.device)
        self.opt = torch.optim.SGD(self.m.parameters(), lr=1.0)
        self.streams = Streams(spec, corpus, opts["windows"])
        self.train_BL = torch.from_numpy(self.streams.train_BL.astype("int64")).to(self.device)
        self.h = self._zero(spec.batch)
        self.V = corpus["vocab"]
        first_s = _timed(self.train)
        self.info = {"compile_s": None, "compile_cpu_s": None, "first_call_s": first_s}

    def _zero(self, b):
        z = self.torch.zeros(self.spec.layers, b, self.spec.hidden, device=self.device)
        return (z, z.clone()) if self.spec.cell == "lstm" else z

    def _detach(self, h):
        return tuple(a.detach() for a in h) if isinstance(h, tuple) else h.detach()

    def train(self):
        torch, F, T = self.torch, self.F, self.spec.bptt
        self.m.train()
        t = time.perf_counter()
        for start in self.streams.next_starts().tolist():
            x = self.train_BL[:, start:start + T]
            y = self.train_BL[:, start + 1:start + T + 1]
            self.h = self._detach(self.h)
            self.opt.zero_grad()
            logits, self.h = self.m(x, self.h)
            loss = F.cross_entropy(logits.reshape(-1, self.V), y.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.m.parameters(), 0.25)
            self.opt.step()
        loss.item()  # wait for the last step, as the JAX peers block on theirs
        return time.perf_counter() - t

    def eval(self, batch):
        torch, F, T = self.torch, self.F, self.spec.bptt
        s_BL, n = self.streams.eval_windows(batch, self.opts["eval_tokens"])
        ids = torch.from_numpy(s_BL.astype("int64")).to(self.device)
        self.m.eval()
        t = time.perf_counter()
        with torch.inference_mode():
            h, total = self._zero(batch), 0.0
            for i in range(n):
                logits, h = self.m(ids[:, i * T:(i + 1) * T], h)
                total = total + F.cross_entropy(logits.reshape(-1, self.V),
                                                ids[:, i * T + 1:(i + 1) * T + 1].reshape(-1),
                                                reduction="sum")
            total.item()  # one wait at the end, as the JAX peers' one compiled scan
        return time.perf_counter() - t, n * batch * T


def torch_lm(spec, V):
    """The PyTorch language model of ``spec`` (dropout between layers as in the others)."""
    import torch.nn as nn
    H, n_layers = spec.hidden, spec.layers
    rnn_cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[spec.cell]

    class TorchLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(V, H)
            self.rnn = rnn_cls(H, H, n_layers, dropout=spec.dropout if n_layers > 1 else 0.0,
                               batch_first=True)
            self.drop = nn.Dropout(spec.dropout)
            self.out = nn.Linear(H, V)
            if spec.tied:
                self.out.weight = self.embed.weight

        def forward(self, x, h):
            o, h = self.rnn(self.drop(self.embed(x)), h)
            return self.out(self.drop(o)), h

    return TorchLM()


class Roofline(Peer):
    """The limits the profile measures against, on this machine under the same load:
    large jitted matmuls (fp32, and bf16 operands with fp32 accumulation) and the
    memory bandwidth of a large elementwise op."""

    def __init__(self, peer, spec, corpus, opts):
        n = opts["matmul_size"]
        self.n = n
        k1, k2 = jax.random.split(jax.random.key(0))
        a = jax.random.normal(k1, (n, n), jnp.float32)
        b = jax.random.normal(k2, (n, n), jnp.float32)
        f32 = jax.jit(lambda a, b: a @ b)
        bf16 = jax.jit(lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32))
        self.fns = {"float32": (f32, (a, b)),
                    "bfloat16": (bf16, (a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)))}
        self.big = jnp.ones((opts["stream_mb"] * 2 ** 18,), jnp.float32)  # MB of float32
        # donated: the output reuses the input's pages, so no call pays for fresh memory
        self.stream = jax.jit(lambda x: x * 0.5 + 1.0, donate_argnums=0)
        for fn, args in self.fns.values():
            jax.block_until_ready(fn(*args))
        self.big = jax.block_until_ready(self.stream(self.big))
        self.info = {"size": n, "stream_mb": opts["stream_mb"]}

    def gflops(self):
        """GFLOP/s per matmul dtype and GB/s of the elementwise stream (read + write),
        the best of two calls each."""
        out = {}
        for name, (fn, args) in self.fns.items():
            t = min(_timed(lambda: jax.block_until_ready(fn(*args))) for _ in range(2))
            out[name] = 2 * self.n ** 3 / t / 1e9
        times = []
        for _ in range(3):
            t = time.perf_counter()
            self.big = jax.block_until_ready(self.stream(self.big))
            times.append(time.perf_counter() - t)
        out["memory_gbs"] = 2 * self.big.nbytes / min(times) / 1e9
        return out
