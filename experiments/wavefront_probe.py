"""A lever of the speed issue, measured and not kept: the recurrent stack in
wavefront order (layer l at time t beside layer l+1 at time t−1).

Layer by layer, an L-layer window is L·T dependent steps, each a small
[B, H] @ [H, G·H] product and a few elementwise ops. Layer l+1 at time t needs only
layer l's output at t, made one step earlier, so all layers can advance together:
T + L − 1 steps. Two forms, timed against the library's layer-by-layer stack
(``layers.recurrent_layer``, hand-written backward of ``time_loop``) on 2-layer LSTMs:

- ``block``: each step one [B, L·H] @ [L·H, L·G·H] product with a block matrix
  (each layer's w_h on the diagonal, the next layer's w_x beside it, zeros
  elsewhere) and the cell's nonlinearity over every layer at once; the steady
  steps run through ``time_loop.time_scan`` and so share its hand-written backward.
- ``split`` (forward only): the same steps without the zero block, two products
  per step (h0 @ [w_h0 | w_x1] and h1 @ w_h1).

Each variant is checked against the layer-by-layer outputs, then timed, interleaved,
median of 7 rounds of 20 calls; the forward at the train and eval batch sizes,
forward + backward (gradient of a random projection of the outputs) at the train
batch size.

    python experiments/wavefront_probe.py > wavefront_probe.jsonl
"""
import functools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from jax_rnnlm import layers
from jax_rnnlm.bench.report import cpu_name
from jax_rnnlm.cells import gru_update, hidden, init_cell, lstm_update, rnn_update, zero_carry
from jax_rnnlm.precision import add_bias
from jax_rnnlm.time_loop import time_scan
from jax_rnnlm.precision import matmul

SHAPES = [  # (name, H, T, train batch, eval batch): bench configs 2 and 3
    ("2 lstm 2x200 T=20", 200, 20, 20, 10),
    ("3 lstm 2x650 T=35", 650, 35, 20, 10),
]


UPDATES = {"rnn": rnn_update, "lstm": lstm_update, "gru": gru_update}


def projected_step(name, p, carry, xw_BG, dtype="float32"):
    """One step of a classic cell from its projected input xw = x w_x + b: (carry, h)."""
    carry = UPDATES[name](p, carry, xw_BG, matmul(hidden(carry), p["w_h"], dtype))
    return carry, hidden(carry)


def wavefront_stack(layer_params, carries, xs_TBD, *, cell="lstm", dtype="float32"):
    """L rnn or lstm layers of one width over a window of T >= L steps, nothing
    between them (no dropout). (Not the gru: its update treats ``h w_h`` apart from
    ``x w_x``, and here the next layer's input product arrives inside the recurrent one.)

    xs [T, B, D] -> (last layer's outputs hs [T, B, H], list of L final carries).
    """
    ps, L, T = layer_params, len(layer_params), xs_TBD.shape[0]
    step = functools.partial(projected_step, cell)
    xw0_TBG = add_bias(matmul(xs_TBD, ps[0]["w_x"], dtype), ps[0]["b"])
    carries, out, last = list(carries), [None] * L, []

    def advance(s, active):
        """Wavefront step s of the idle-edge steps: each active layer l does time s − l."""
        new_out = list(out)
        for l in active:
            xw = xw0_TBG[s] if l == 0 else add_bias(matmul(out[l - 1], ps[l]["w_x"], dtype),
                                                     ps[l]["b"])
            carries[l], new_out[l] = step(ps[l], carries[l], xw, dtype)
        return new_out

    for s in range(L - 1):
        out = advance(s, range(s + 1))
    hs_SBK, stacked = time_scan(_stacked_update(cell, L), dtype, 1,
                                _block_weight(ps), _stacked_rest(ps), _stack(carries),
                                _steady_inputs(ps, xw0_TBG, L), None)
    H = ps[0]["w_h"].shape[0]
    carries = _unstack(stacked, L)
    out = [hidden(c) for c in carries]
    last.append(hs_SBK[..., (L - 1) * H:])
    for s in range(T, T + L - 1):
        out = advance(s, range(s - T + 1, L))
        last.append(out[L - 1][None])
    return jnp.concatenate(last, axis=0), carries


def _block_weight(ps):
    """[L·H, L·G·H]: block (l, l) is layer l's w_h, block (l, l+1) layer l+1's w_x."""
    L = len(ps)
    H, GH = ps[0]["w_h"].shape
    zero = jnp.zeros((H, GH), ps[0]["w_h"].dtype)
    rows = [[ps[l]["w_h"] if m == l else ps[m]["w_x"] if m == l + 1 else zero
             for m in range(L)] for l in range(L)]
    return jnp.block(rows)


def _steady_inputs(ps, xw0_TBG, L):
    """[T − L + 1, B, L·G·H]: layer 0's projected input at its times L−1 … T−1, and
    the biases of layers 1 … L−1 (their input products are inside the block matmul)."""
    xw = xw0_TBG[L - 1:]
    biases = [jnp.broadcast_to(p["b"], xw.shape) for p in ps[1:]]
    return jnp.concatenate([xw, *biases], axis=-1)


def _stacked_rest(ps):
    """The per-layer params a cell's update reads besides w_x, w_h, b (gru's b_hn), as [L, ·]."""
    rest = [{k: v for k, v in p.items() if k not in ("w_x", "w_h", "b")} for p in ps]
    return jax.tree.map(lambda *v: jnp.stack(v), *rest)


@functools.cache
def _stacked_update(name, L):
    """The cell's update over all L layers at once: carries and inputs side by side
    on the last axis ([B, L·H], [B, L·G·H]), computed as [B, L, ·]."""
    update = UPDATES[name]

    def stacked(rest, carry, xw, hw):
        split = lambda x: x.reshape(x.shape[0], L, -1)
        new = update(rest, jax.tree.map(split, carry), split(xw), split(hw))
        return jax.tree.map(lambda x: x.reshape(x.shape[0], -1), new)
    return stacked


def _stack(carries):
    return jax.tree.map(lambda *c: jnp.concatenate(c, axis=-1), *carries)


def _unstack(carry, L):
    return [jax.tree.map(lambda x: x[..., l * (x.shape[-1] // L):(l + 1) * (x.shape[-1] // L)],
                         carry) for l in range(L)]


def layerwise(ps, carries, xs_TBD, *, dtype="float32"):
    """The library's stack: one ``recurrent_layer`` after another."""
    x, new = xs_TBD, []
    for p, c in zip(ps, carries):
        x, c = layers.recurrent_layer("lstm", p, c, x, dtype=dtype)
        new.append(c)
    return x, new


def split_forward(ps, carries, xs_TBD, *, dtype="float32"):
    """Two-layer LSTM wavefront without the zero block (forward only)."""
    (p0, p1), G = ps, ps[0]["w_h"].shape[1]
    step = functools.partial(projected_step, "lstm")
    xw0_TBG = add_bias(matmul(xs_TBD, p0["w_x"], dtype), p0["b"])
    c0, _ = step(p0, carries[0], xw0_TBG[0], dtype)
    w0 = jnp.concatenate([p0["w_h"], p1["w_x"]], axis=1)

    def body(carry, xw_BG):
        c0, c1 = carry
        a, b = matmul(hidden(c0), w0, dtype), matmul(hidden(c1), p1["w_h"], dtype)
        c1 = lstm_update(None, c1, p1["b"], a[:, G:] + b)
        return (lstm_update(None, c0, xw_BG, a[:, :G]), c1), hidden(c1)

    (c0, c1), hs = jax.lax.scan(body, (c0, carries[1]), xw0_TBG[1:])
    c1, h = step(p1, c1, add_bias(matmul(hidden(c0), p1["w_x"], dtype), p1["b"]), dtype)
    return jnp.concatenate([hs, h[None]], 0), [c0, c1]


def _max_abs_diff(x, y):
    """Largest |x - y| over the leaves of two pytrees of the same structure, in float32."""
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    return max(float(jnp.max(jnp.abs(f32(a) - f32(b))))
               for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y), strict=True))


def _median_ms(fns, args, rounds=7, calls=20):
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t = time.perf_counter()
            for _ in range(calls):
                out = f(*args)
            jax.block_until_ready(out)
            times[k].append((time.perf_counter() - t) / calls * 1e3)
    return {k: round(float(np.median(v)), 3) for k, v in times.items()}


def _probe(name, H, T, B, B_eval, dtype):
    ks = jax.random.split(jax.random.key(0), 4)
    ps = [init_cell(ks[l], "lstm", H, H, 0.1) for l in range(2)]
    forms = {"layerwise": layerwise, "block": wavefront_stack, "split": split_forward}
    rows = []
    for kind, batch in (("forward", B), ("forward", B_eval), ("forward+backward", B)):
        cs = [zero_carry("lstm", batch, H) for _ in range(2)]
        x = jax.random.normal(ks[2], (T, batch, H))
        r = jax.random.normal(ks[3], (T, batch, H))
        if kind == "forward":
            fns = {k: jax.jit(functools.partial(lambda f, *a: f(*a, dtype=dtype)[0], f))
                   for k, f in forms.items()}
        else:
            fns = {k: jax.jit(jax.grad(functools.partial(
                lambda f, ps, cs, x, r: jnp.sum(f(ps, cs, x, dtype=dtype)[0] * r), f),
                argnums=(0, 2))) for k, f in forms.items() if k != "split"}
        args = (ps, cs, x, r) if kind != "forward" else (ps, cs, x)
        ref = fns["layerwise"](*args)
        err = {k: _max_abs_diff(f(*args), ref) for k, f in fns.items()}
        ms = _median_ms(fns, args)
        rows.append({"config": name, "dtype": dtype, "pass": kind, "batch": batch, "ms": ms,
                     "speedup_over_layerwise": {k: round(ms["layerwise"] / v, 3)
                                                for k, v in ms.items()},
                     "max_abs_diff": err})
    return rows


def main():
    print(json.dumps({"cpu": cpu_name(), "jax": jax.__version__}), flush=True)
    for name, H, T, B, B_eval in SHAPES:
        for dtype in ("float32", "bfloat16"):
            for row in _probe(name, H, T, B, B_eval, dtype):
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
