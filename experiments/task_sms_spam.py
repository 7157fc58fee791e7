"""SMS spam detection (many-to-one): a bidirectional LSTM over words, final states of
both directions -> ham/spam.

Split: ``datasets.stratified_split(labels, 0.2, seed=0)``, 80 % of each class for
training (3,862 ham + 598 spam), 20 % for test (965 ham + 149 spam). Messages are
cut to their first 100 tokens. Vocabulary: the training messages' tokens.
Usage: python experiments/task_sms_spam.py [--uni] [--pool last|mean|max] [--epochs N]
"""
import argparse
import json
import time

import jax
import numpy as np

from jax_rnnlm import data, tokenizer
from jax_rnnlm.seqtasks import datasets, fit, heads, metrics
from jax_rnnlm.seqtasks.encoder import EncoderConfig

MAX_TOKENS = 100


def prepare(path):
    records = datasets.load_sms(path)
    labels = np.array([label == "spam" for label, _ in records], np.int32)
    toks = [datasets.sms_tokens(m)[:MAX_TOKENS] or [tokenizer.UNK] for _, m in records]
    train_idx, test_idx = datasets.stratified_split(labels, 0.2, seed=0)
    vocab = data.Vocab.by_frequency(t for i in train_idx for t in toks[i])
    return [vocab.ids(t) for t in toks], labels, train_idx, test_idx, vocab


def run(path=None, *, bidirectional=True, pool="last", epochs=6, hidden=64, seed=0, echo=print):
    ids, labels, train_idx, test_idx, vocab = prepare(path or datasets.data_path(
        "sms_spam/SMSSpamCollection"))
    cfg = heads.HeadConfig(EncoderConfig((len(vocab),), (64,), hidden_dim=hidden,
                                         bidirectional=bidirectional),
                           num_classes=2, pool=pool, dropout=0.3)
    params = heads.init_params(jax.random.key(seed), cfg)

    def collate(idx):
        tokens, lengths = fit.pad_batch([ids[i] for i in idx], multiple=16)
        return tokens, lengths, labels[idx]

    def loss_fn(p, batch, key):
        return heads.classifier_loss(p, cfg, *batch, key)

    logits = jax.jit(lambda p, t, l: heads.classifier_logits(p, cfg, t, l))

    def evaluate(p):
        pred = np.zeros(len(ids), np.int32)
        for idx in fit.eval_order([len(ids[i]) for i in test_idx], 64):
            rows = test_idx[idx]
            pred[rows] = np.asarray(logits(p, *collate(rows)[:2])).argmax(-1)
        prec, rec, f1 = metrics.precision_recall_f1(pred[test_idx], labels[test_idx], 1)
        return {"test_acc": metrics.accuracy(pred[test_idx], labels[test_idx]),
                "spam_precision": prec, "spam_recall": rec, "spam_f1": f1}

    fit_cfg = fit.FitConfig(epochs=epochs, batch_size=32, lr=2e-3, seed=seed)
    params, history = fit.fit(loss_fn, params, lambda idx: collate(train_idx[idx]),
                              [len(ids[i]) for i in train_idx],
                              fit_cfg, evaluate=evaluate, echo=echo)
    return history[-1]


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--uni", action="store_true", help="forward LSTM only")
    ap.add_argument("--pool", default="last")
    ap.add_argument("--epochs", type=int, default=6)
    a = ap.parse_args()
    t0 = time.perf_counter()
    summary = run(bidirectional=not a.uni, pool=a.pool, epochs=a.epochs)
    print(json.dumps(dict(summary, total_wall_s=round(time.perf_counter() - t0, 1))))
