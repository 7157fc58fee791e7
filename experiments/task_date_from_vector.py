"""One-to-many: write the ISO date string "1994-09-27" from one vector, the (year, month,
day) embedding, with the seq2seq decoder (no source sequence).

h_0 = tanh([E_year[y]; E_month[m]; E_day[d]] W + b) starts an LSTM decoder that is
also peeky (h_0 is fed at every step). Data: the answers of seq2seq/date.txt,
textbook split (seed 1984, 45,000 / 5,000); years not seen in training are <unk>.
Prints exact-match accuracy of greedy decoding on the test part and samples
(greedy and beam-3) for some test dates.
Usage: python experiments/task_date_from_vector.py [--epochs N]
"""
import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from jax_rnnlm import data, layers, tokenizer
from jax_rnnlm.cells import uniform
from jax_rnnlm.seqtasks import datasets, fit, seq2seq


def prepare(path):
    answers = [a for _, a in datasets.load_seq2seq(path)]
    train_idx, test_idx = datasets.textbook_split(len(answers))
    ymd = [a.split("-") for a in answers]
    years = data.Vocab.by_frequency(ymd[i][0] for i in train_idx)
    year_ids = years.ids([y for y, _, _ in ymd])  # unseen years are <unk>
    cond = np.array([[y, int(m) - 1, int(d) - 1] for y, (_, m, d) in zip(year_ids, ymd)],
                    np.int32)
    tgt_vocab = data.Vocab.by_frequency(c for i in train_idx for c in answers[i])
    tgt, _ = fit.pad_batch([[tokenizer.BOS_ID] + tgt_vocab.ids(a) + [tokenizer.EOS_ID] for a in answers])
    return cond, tgt, answers, train_idx, test_idx, years, tgt_vocab


def init_params(key, cfg, n_years, e=16):
    k_y, k_m, k_d, k_w, k_dec = jax.random.split(key, 5)
    s = cfg.init_scale
    dec = seq2seq.init_params(k_dec, cfg)
    return {"year": uniform(k_y, (n_years, e), s), "month": uniform(k_m, (12, e), s),
            "day": uniform(k_d, (31, e), s),
            "proj": {"w": uniform(k_w, (3 * e, cfg.hidden_dim), s),
                     "b": jnp.zeros((cfg.hidden_dim,), jnp.float32)},
            **{k: v for k, v in dec.items() if k not in ("src_embed", "encoder")}}


def encoded(params, cfg, cond_B3):
    """The single input vector per row, as the decoder's Encoded."""
    x = jnp.concatenate([layers.embedding(params[name], cond_B3[:, i])
                         for i, name in enumerate(("year", "month", "day"))], axis=-1)
    h_BH = jnp.tanh(layers.affine(x, params["proj"]["w"], params["proj"]["b"]))
    return seq2seq.encoded_from_vector(params, cfg, h_BH)


def run(*, epochs=5, hidden=128, seed=0, echo=print):
    path = datasets.data_path("seq2seq/date.txt")
    cond, tgt, answers, train_idx, test_idx, years, tv = prepare(path)
    cfg = seq2seq.Seq2seqConfig(1, len(tv), embed_dim=16, hidden_dim=hidden, peeky=True)
    params = init_params(jax.random.key(seed), cfg, len(years))
    max_len = tgt.shape[1] - 1

    def loss_fn(p, batch, key):
        c, t = batch
        return seq2seq.decoder_loss(p, cfg, encoded(p, cfg, c), t)

    greedy = jax.jit(lambda p, c: seq2seq.greedy_decode(p, cfg, encoded(p, cfg, c), max_len)[0])
    beam = jax.jit(lambda p, c: seq2seq.beam_decode(p, cfg, encoded(p, cfg, c), max_len, 3))
    text = lambda ids: "".join(tv.tokens(seq2seq.strip(ids)))

    def evaluate(p):
        outs = [text(t) for i in range(0, len(test_idx), 1000)
                for t in np.asarray(greedy(p, cond[test_idx[i:i + 1000]]))]
        return {"test_exact_match": float(np.mean([o == answers[i]
                                                   for o, i in zip(outs, test_idx)]))}

    fit_cfg = fit.FitConfig(epochs=epochs, batch_size=128, lr=1e-3, pool=1, seed=seed)
    params, history = fit.fit(
        loss_fn, params, lambda idx: (cond[train_idx[idx]], tgt[train_idx[idx]]),
        np.zeros(len(train_idx)), fit_cfg, evaluate=evaluate, echo=echo)
    rows = test_idx[:4]
    toks, scores = beam(params, cond[rows])
    samples = [{"input": [years.words[cond[r, 0]], int(cond[r, 1]) + 1, int(cond[r, 2]) + 1],
                "greedy": text(g), "beam3": [f"{text(b)} ({float(s):.3f})" for b, s in zip(tk, sc)]}
               for r, g, tk, sc in zip(rows, np.asarray(greedy(params, cond[rows])),
                                       np.asarray(toks), np.asarray(scores))]
    return dict(history[-1], samples=samples)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5)
    a = ap.parse_args()
    t0 = time.perf_counter()
    print(json.dumps(dict(run(epochs=a.epochs), total_wall_s=round(time.perf_counter() - t0, 1))))
