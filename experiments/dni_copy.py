"""The copy task (Graves et al. 2014) under truncated BPTT, with and without synthetic
gradients (DNI, Jaderberg et al. 2016): the largest pattern length solved.

Each episode is N random symbols of ``--bits`` bits (tokens 0 .. 2^bits - 1), a
delimiter token, then the same N symbols again; episodes follow each other in B
parallel streams, which the LSTM reads one token at a time and predicts the next
(the library's language model, step and DNI unchanged). Only the second half of an
episode is predictable: it is solved at length N when the argmax prediction of those
N symbols is right for at least ``--solved`` of them on fresh episodes. To copy, the
state must carry a symbol N + 1 steps; truncated BPTT with windows of T < N + 1 steps
gets no gradient for that span, which is what synthetic gradients can supply.

Curriculum: from N = 1, train in blocks of ``--check-every`` windows on fresh
episodes (the carry reset at each block, which starts on an episode boundary),
evaluate after each block, move to N + 1 once solved; stop after ``--max-windows``.

    python experiments/dni_copy.py --bptt 4                       # plain truncated BPTT
    python experiments/dni_copy.py --bptt 4 --sg linear --sg-scale 0.1
    python experiments/dni_copy.py --bptt 4 --sg linear --sg-scale 1 --sg-discount 0
Prints one JSON line per solved length and a summary line.
"""
import argparse
import functools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from jax_rnnlm import model, optim, step
from jax_rnnlm.config import DNIConfig, ModelConfig


def episodes(rng, n, bits, batch, length):
    """Streams [B, length] of back-to-back episodes, and copy_BL: True where the next
    token is a copied symbol (the positions scored)."""
    delim = 2 ** bits
    per = 2 * n + 1
    count = -(-length // per) + 1
    sym = rng.integers(0, delim, (batch, count, n))
    ep = np.concatenate([sym, np.full((batch, count, 1), delim), sym], axis=2)
    copy = np.concatenate([np.zeros((batch, count, n + 1), bool),
                           np.ones((batch, count, n), bool)], axis=2)
    streams = ep.reshape(batch, -1)[:, :length].astype(np.int32)
    target_is_copy = np.roll(copy.reshape(batch, -1), -1, axis=1)[:, :length]
    return streams, target_is_copy


@functools.partial(jax.jit, static_argnames=("cfg", "bptt"))
def copy_accuracy(params, cfg, streams_BL, copy_BL, bptt):
    """Fraction of copy positions whose argmax prediction is the target (carry flowing)."""
    n_windows = (streams_BL.shape[1] - 1) // bptt

    def body(carry, k):
        x, y = step.window(streams_BL, k * bptt, bptt)
        m = jax.lax.dynamic_slice_in_dim(copy_BL, k * bptt, bptt, axis=1)
        logits, carry = model.forward(params, cfg, carry, x)
        right = (jnp.argmax(logits, axis=-1) == y) & m
        return carry, (jnp.sum(right), jnp.sum(m))
    _, (right, total) = jax.lax.scan(body, model.init_carry(cfg, streams_BL.shape[0]),
                                     jnp.arange(n_windows, dtype=jnp.int32))
    return jnp.sum(right) / jnp.maximum(jnp.sum(total), 1)


def run(args):
    cfg = ModelConfig(vocab_size=2 ** args.bits + 1, embed_dim=16, hidden_dim=args.hidden,
                      cell="lstm", init_scale=0.1)
    tx = optim.make_optimizer("adam", args.lr, 1.0)
    dni_cfg = (DNIConfig(args.sg, args.sg_scale, args.sg_lr, discount=args.sg_discount)
               if args.sg != "none" else None)
    state = step.init_state(jax.random.key(args.seed), cfg, tx, args.batch_size, dni_cfg)
    train = step.jit_train_windows(cfg, tx, args.bptt, dni_cfg)
    rng = np.random.default_rng(args.seed)
    W, n, windows, solved, t0 = 50, 1, 0, [], time.perf_counter()
    best_unsolved, cos = 0.0, []
    while windows < args.max_windows:
        length = args.check_every * args.bptt + 1
        streams, _ = episodes(rng, n, args.bits, args.batch_size, length)
        state = state.replace(carry=jax.tree.map(jnp.zeros_like, state.carry))
        streams = jnp.asarray(streams)
        for a in range(0, args.check_every, W):
            starts = jnp.arange(a, min(a + W, args.check_every), dtype=jnp.int32) * args.bptt
            state, metrics = train(state, streams, starts)
            cos.append(float(np.mean(metrics.get("sg_cos", np.zeros(1)))))
        windows += args.check_every
        test, copy = episodes(rng, n, args.bits, 64, 40 * (2 * n + 1) + 1)
        acc = float(copy_accuracy(state.params, cfg, jnp.asarray(test), jnp.asarray(copy),
                                  args.bptt))
        if acc >= args.solved:
            solved.append(n)
            print(json.dumps({"solved": n, "accuracy": acc, "windows": windows,
                              "sg_cos": float(np.mean(cos[-10:])),
                              "wall_s": time.perf_counter() - t0}), flush=True)
            n, best_unsolved = n + 1, 0.0
        else:
            best_unsolved = max(best_unsolved, acc)
    return {"bptt": args.bptt, "sg": args.sg, "sg_scale": args.sg_scale,
            "sg_discount": args.sg_discount, "largest_solved": max(solved, default=0),
            "at_length": n, "best_accuracy_there": best_unsolved,
            "sg_cos_last": float(np.mean(cos[-10:])), "windows": windows,
            "wall_s": time.perf_counter() - t0}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bptt", type=int, default=4, help="T, steps per truncated window")
    p.add_argument("--sg", choices=["none", "linear", "mlp"], default="none")
    p.add_argument("--sg-scale", type=float, default=0.1)
    p.add_argument("--sg-discount", type=float, default=None,
                   help="γ of the SG's bootstrapped target (default: --sg-scale)")
    p.add_argument("--sg-lr", type=float, default=1e-3)
    p.add_argument("--bits", type=int, default=4, help="bits per symbol (default: 4)")
    p.add_argument("--hidden", type=int, default=128, help="H of the LSTM (default: 128)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    p.add_argument("--check-every", type=int, default=500, help="windows between checks")
    p.add_argument("--max-windows", type=int, default=40_000)
    p.add_argument("--solved", type=float, default=0.98, help="copy accuracy that counts "
                   "as solved (default: 0.98)")
    p.add_argument("--seed", type=int, default=0)
    print(json.dumps(run(p.parse_args(argv))))


if __name__ == "__main__":
    main()
