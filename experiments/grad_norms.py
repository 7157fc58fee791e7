"""Global gradient norm of trained models over train windows: how often clipping acts.

For each workdir: the norm of the gradient of the mean window loss over ``--windows``
windows of the train split (B = 20 streams, the carry flowing), its median and 10th /
90th percentiles, and the share of windows above ``--clip``.

    python experiments/grad_norms.py /work/runs/ptb_lstm_small /work/runs/ptb_small_adaptive
"""
import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax_rnnlm import checkpoint, data, model


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdirs", nargs="+", help="trained PTB runs")
    ap.add_argument("--windows", type=int, default=100)
    ap.add_argument("--bptt", type=int, default=20)
    ap.add_argument("--clip", type=float, default=0.25)
    a = ap.parse_args()
    for wd in a.workdirs:
        trained = checkpoint.load_trained(wd)
        cfg, T = trained.model_cfg, a.bptt
        corpus = data.load_corpus(trained.source, level=trained.level, vocab=trained.vocab)
        streams = data.batchify(corpus.train, 20, source="train split")
        grad = jax.jit(jax.value_and_grad(
            lambda p, c, x, y: model.loss(p, cfg, c, x, y), has_aux=True))
        carry, norms = model.init_carry(cfg, 20), []
        for k in range(a.windows):
            x, y = (jnp.asarray(streams[:, k * T + i:(k + 1) * T + i]) for i in (0, 1))
            (_, carry), g = grad(trained.params, carry, x, y)
            norms.append(float(optax.global_norm(g)))
        p10, med, p90 = np.percentile(norms, [10, 50, 90])
        print(f"{wd}: gradient norm median {med:.3f} (10%: {p10:.3f}, 90%: {p90:.3f}); "
              f"above {a.clip}: {np.mean(np.array(norms) > a.clip):.0%} of {a.windows} windows",
              flush=True)


if __name__ == "__main__":
    main()
