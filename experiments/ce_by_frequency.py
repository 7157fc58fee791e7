"""Where a model's perplexity comes from: mean cross-entropy of the valid split's
target tokens, bucketed by the word's frequency rank in the train split.

Used to compare the full and the adaptive softmax (experiments/RESULTS.md, "Large
vocabularies"): same data, same buckets, the carry flowing through the split.

    python experiments/ce_by_frequency.py /work/runs/ptb_lstm_small /work/runs/ptb_small_adaptive
"""
import argparse
import collections

import jax
import jax.numpy as jnp
import numpy as np

from jax_rnnlm import checkpoint, data, model, tokenizer

EDGES = (0, 100, 1000, 2000, 5000, 10_000)


def token_ce(trained, ids, batch, bptt):
    """Cross-entropy [N] of every target of the streams and the target ids [N]."""
    cfg = trained.model_cfg
    streams = data.batchify(ids, batch, source="valid split")
    losses = jax.jit(lambda c, x, y: model.token_losses(trained.params, cfg, c, x, y))
    carry, ce, targets = model.init_carry(cfg, batch), [], []
    for start in range(0, streams.shape[1] - bptt, bptt):  # the full windows
        x, y = streams[:, start:start + bptt], streams[:, start + 1:start + bptt + 1]
        l_BT, carry = losses(carry, jnp.asarray(x), jnp.asarray(y))
        ce.append(np.asarray(l_BT))
        targets.append(y)
    return np.concatenate(ce, 1).ravel(), np.concatenate(targets, 1).ravel()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdirs", nargs="+", help="trained word-level PTB runs")
    ap.add_argument("--which", choices=("last", "best"), default="last")
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--bptt", type=int, default=35)
    a = ap.parse_args()
    for wd in a.workdirs:
        trained = checkpoint.load_trained(wd, a.which)
        read = lambda split: tokenizer.tokenize(
            tokenizer.read_text(f"{trained.source}/ptb.{split}.txt"), "word")
        rank = {w: i for i, (w, _) in enumerate(collections.Counter(read("train")).most_common())}
        ids = np.array([trained.vocab.index.get(w, trained.vocab.unk_id) for w in read("valid")])
        ce, targets = token_ce(trained, ids, a.batch, a.bptt)
        r = np.array([rank.get(trained.vocab.words[t], EDGES[-1] - 1) for t in targets])
        buckets = []
        for lo, hi in zip(EDGES[:-1], EDGES[1:]):
            m = (r >= lo) & (r < hi)
            buckets.append(f"ranks {lo}-{hi}: {m.mean():.0%} of tokens, ce {ce[m].mean():.3f}")
        print(f"{wd} ({a.which}, step {trained.step}): ppl {np.exp(ce.mean()):.2f}; "
              + "; ".join(buckets), flush=True)


if __name__ == "__main__":
    main()
