"""How much of the boundary gradient can a linear synthetic-gradient module predict?

DNI's SG(c_k) is regressed onto g_k, the gradient of the window's (summed) loss with
respect to the carry c_k it started from. The best any *linear* SG can do is the
least-squares fit of g_k on c_k. This script collects (c_k, g_k) pairs from a trained
model's windows over the train split (the carry flowing, first 100 windows dropped),
fits on 80% and reports the held-out cosine and R² of the fit.

    python experiments/dni_predictability.py --workdir /work/runs/ptb_lstm_small --bptt 5
"""
import argparse

import jax
import jax.numpy as jnp
import numpy as np

from jax_rnnlm import checkpoint, data, dni, model


def pairs(trained, streams_BL, bptt, windows):
    """Carries c_k [N, S] and summed-loss gradients g_k [N, S] of ``windows`` windows."""
    cfg = trained.model_cfg
    grad = jax.jit(jax.value_and_grad(
        lambda c, x, y: model.loss(trained.params, cfg, c, x, y), has_aux=True))
    carry, cs, gs = model.init_carry(cfg, streams_BL.shape[0]), [], []
    for k in range(windows):
        x, y = (jnp.asarray(streams_BL[:, k * bptt + i:(k + 1) * bptt + i]) for i in (0, 1))
        (_, new), g = grad(carry, x, y)
        cs.append(np.asarray(dni.flatten(carry)))
        gs.append(np.asarray(dni.flatten(g)) * x.size)
        carry = new
    return np.concatenate(cs[100:]), np.concatenate(gs[100:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True, help="a trained PTB run (word or char level)")
    ap.add_argument("--bptt", type=int, default=5)
    ap.add_argument("--windows", type=int, default=1500)
    a = ap.parse_args()
    trained = checkpoint.load_trained(a.workdir)
    corpus = data.load_corpus(trained.source, level=trained.level, vocab=trained.vocab)
    c, g = pairs(trained, data.batchify(corpus.train, 20, source="train"), a.bptt, a.windows)
    n = int(0.8 * len(c))
    x = np.hstack([c, np.ones((len(c), 1))])
    w = np.linalg.lstsq(x[:n], g[:n], rcond=None)[0]
    p, t = x[n:] @ w, g[n:]
    cos = np.sum(p * t) / np.sqrt(np.sum(p * p) * np.sum(t * t))
    r2 = 1 - np.sum((p - t) ** 2) / np.sum((t - t.mean(0)) ** 2)
    print(f"{a.workdir} T={a.bptt}: {len(c)} pairs, mean |g_k| per stream "
          f"{np.linalg.norm(g, axis=1).mean():.3f}; held-out linear fit: cosine {cos:.3f}, "
          f"R² {r2:.3f}")


if __name__ == "__main__":
    main()
