"""The numpy textbook's seq2seq toys: addition ("16+75" -> "91") and date normalisation
("september 27, 1994" -> "1994-09-27"), exact-match accuracy of greedy decoding.

Split: ``datasets.textbook_split(50000, seed=1984)``, the textbook's ``load_data``
shuffle, 45,000 train / 5,000 test. Characters are tokens; the fixed-width
padding spaces of the files are stripped and replaced by masks. Model as in the
textbook: D = 16, LSTM, Adam lr 1e-3, batch 128, clip 5.
Variants: plain, reversed, peeky_reversed, attention (textbook's AttentionSeq2seq,
which also reverses the input).
Usage: python experiments/task_seq2seq.py --data addition|date --variant V [--epochs N]
"""
import argparse
import json
import time

import jax
import numpy as np

from jax_rnnlm.data import Vocab
from jax_rnnlm.tokenizer import BOS_ID, EOS_ID
from jax_rnnlm.seqtasks import datasets, fit, seq2seq

VARIANTS = {"plain": {}, "reversed": {"reverse_source": True},
            "peeky_reversed": {"peeky": True, "reverse_source": True},
            "attention": {"attention": True, "reverse_source": True}}
FILES = {"addition": "seq2seq/addition.txt", "date": "seq2seq/date.txt"}


def prepare(path):
    """Padded source/target id arrays for all 50,000 pairs, the split, and the vocabularies."""
    pairs = datasets.load_seq2seq(path)
    train_idx, test_idx = datasets.textbook_split(len(pairs))
    src_vocab = Vocab.by_frequency(c for i in train_idx for c in pairs[i][0])
    tgt_vocab = Vocab.by_frequency(c for i in train_idx for c in pairs[i][1])
    src, src_len = fit.pad_batch([src_vocab.ids(q) for q, _ in pairs])
    tgt, _ = fit.pad_batch([[BOS_ID] + tgt_vocab.ids(a) + [EOS_ID] for _, a in pairs])
    answers = [a for _, a in pairs]
    return src, src_len, tgt, answers, train_idx, test_idx, src_vocab, tgt_vocab


def exact_match(decode, params, src, src_len, answers, idx, tgt_vocab):
    """Fraction of ``idx`` whose greedy decoding (up to EOS) equals the answer; and decodings."""
    hits, outs = 0, []
    for i in range(0, len(idx), 500):
        rows = idx[i:i + 500]
        toks = np.asarray(decode(params, src[rows], src_len[rows]))
        for r, t in zip(rows, toks):
            out = "".join(tgt_vocab.tokens(seq2seq.strip(t)))
            hits += out == answers[r]
            outs.append(out)
    return hits / len(idx), outs


def run(data="addition", variant="peeky_reversed", *, epochs=25, hidden=128, seed=0, echo=print):
    src, src_len, tgt, answers, train_idx, test_idx, sv, tv = prepare(
        datasets.data_path(FILES[data]))
    cfg = seq2seq.Seq2seqConfig(len(sv), len(tv), embed_dim=16, hidden_dim=hidden,
                                **VARIANTS[variant])
    params = seq2seq.init_params(jax.random.key(seed), cfg)
    max_len = tgt.shape[1] - 1  # answer + EOS

    def loss_fn(p, batch, key):
        return seq2seq.loss(p, cfg, *batch)

    @jax.jit
    def decode(p, s, s_len):
        return seq2seq.greedy_decode(p, cfg, seq2seq.encode_source(p, cfg, s, s_len),
                                     max_len)[0]

    def evaluate(p):
        acc, outs = exact_match(decode, p, src, src_len, answers, test_idx, tv)
        return {"test_exact_match": acc, "samples": [
            f"{''.join(sv.tokens(src[i][:src_len[i]]))} -> {o} ({answers[i]})"
            for i, o in zip(test_idx[:3], outs[:3])]}

    fit_cfg = fit.FitConfig(epochs=epochs, batch_size=128, lr=1e-3, pool=1, seed=seed)
    _, history = fit.fit(
        loss_fn, params, lambda idx: (src[train_idx[idx]], src_len[train_idx[idx]],
                                      tgt[train_idx[idx]]),
        src_len[train_idx], fit_cfg, evaluate=evaluate, echo=echo)
    return history[-1]


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", choices=sorted(FILES), required=True)
    ap.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--hidden", type=int, default=128)
    a = ap.parse_args()
    t0 = time.perf_counter()
    summary = run(a.data, a.variant, epochs=a.epochs, hidden=a.hidden)
    print(json.dumps(dict(summary, data=a.data, variant=a.variant,
                          total_wall_s=round(time.perf_counter() - t0, 1))))
