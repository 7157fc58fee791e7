"""CoNLL-2003 tagging (many-to-many): POS (column 2) or NER (column 4, IOB1) with a
(bi)LSTM tagger, no pretrained embeddings.

Each token is three ids, each with its own randomly initialised table: the
lower-cased word (digits -> 0; words seen once in eng.train -> <unk>, so the
<unk> row is trained), its casing class and its 3-letter suffix. Trained on
eng.train, model picked by nothing (last epoch), scored on eng.testa (dev) and
eng.testb (test). NER is scored by entity F1: exact span and type (conlleval).
Usage: python experiments/task_conll.py --task pos|ner [--uni] [--epochs N]
"""
import argparse
import json
import time

import jax
import numpy as np

from jax_rnnlm import data, tokenizer
from jax_rnnlm.seqtasks import datasets, fit, heads, metrics
from jax_rnnlm.seqtasks.datasets import casing, suffix, word_key
from jax_rnnlm.seqtasks.encoder import EncoderConfig

COLUMN = {"pos": "pos", "ner": "ner"}


FEATURES = (word_key, casing, suffix)  # one id column each; unseen keys are <unk>


def featurize(sentences, vocabs):
    """Per sentence an int array [T, F=3]: word, casing, suffix ids."""
    return [np.array([v.ids([f(x) for x in sent.words]) for f, v in zip(FEATURES, vocabs)],
                     np.int32).T for sent in sentences]


def prepare(folder, task):
    split = {name: datasets.load_conll(folder / f"eng.{name}")
             for name in ("train", "testa", "testb")}
    words = [x for s in split["train"] for x in s.words]
    vocabs = tuple(data.Vocab.by_frequency((f(x) for x in words), min_count=n)
                   for f, n in zip(FEATURES, (2, 1, 2)))
    tags = data.Vocab.by_frequency(t for s in split["train"] for t in getattr(s, COLUMN[task]))
    out = {}
    for name, sents in split.items():
        feats = featurize(sents, vocabs)
        gold = [np.array(tags.ids(getattr(s, COLUMN[task])), np.int32) for s in sents]
        out[name] = (feats, gold, [getattr(s, COLUMN[task]) for s in sents])
    return out, vocabs, tags


def run(task, *, bidirectional=True, epochs=8, hidden=100, seed=0, echo=print):
    splits, vocabs, tags = prepare(datasets.data_path("conll2003/eng.train").parent, task)
    cfg = heads.HeadConfig(EncoderConfig(tuple(len(v) for v in vocabs), (100, 8, 30),
                                         hidden_dim=hidden, bidirectional=bidirectional),
                           num_classes=len(tags), dropout=0.5 if task == "ner" else 0.3)
    params = heads.init_params(jax.random.key(seed), cfg)

    def collate(feats, gold, idx):
        x, lengths = fit.pad_batch([feats[i] for i in idx], multiple=8)
        y, _ = fit.pad_batch([gold[i] for i in idx], width=x.shape[1])
        return x, lengths, y

    def loss_fn(p, batch, key):
        return heads.tagger_loss(p, cfg, *batch, key)

    logits = jax.jit(lambda p, x, l: heads.tagger_logits(p, cfg, x, l))

    def predict(p, name):
        feats, gold, _ = splits[name]
        pred = [None] * len(feats)
        special = len(tokenizer.RESERVED)  # never predict <pad>, <bos>, <eos> or <unk>
        for idx in fit.eval_order([len(f) for f in feats], 128):
            x, lengths, _ = collate(feats, gold, idx)
            out = np.asarray(logits(p, x, lengths))[..., special:].argmax(-1) + special
            for row, i in enumerate(idx):
                pred[i] = out[row, :lengths[row]]
        return pred

    def evaluate(p):
        out = {}
        for name in ("testa", "testb"):
            pred = predict(p, name)
            gold = splits[name][1]
            out[f"{name}_token_acc"] = metrics.accuracy(np.concatenate(pred),
                                                        np.concatenate(gold))
            if task == "ner":
                out[f"{name}_f1"] = metrics.conll_f1(splits[name][2],
                                                     [tags.tokens(x) for x in pred])[2]
        return out

    feats, gold, _ = splits["train"]
    fit_cfg = fit.FitConfig(epochs=epochs, batch_size=32, lr=2e-3, lr_decay=0.9, seed=seed)
    _, history = fit.fit(loss_fn, params, lambda idx: collate(feats, gold, idx),
                         [len(f) for f in feats], fit_cfg, evaluate=evaluate, echo=echo)
    return history[-1]


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", choices=("pos", "ner"), required=True)
    ap.add_argument("--uni", action="store_true", help="forward LSTM only")
    ap.add_argument("--epochs", type=int, default=8)
    a = ap.parse_args()
    t0 = time.perf_counter()
    summary = run(a.task, bidirectional=not a.uni, epochs=a.epochs)
    print(json.dumps(dict(summary, task=a.task, bidirectional=not a.uni,
                          total_wall_s=round(time.perf_counter() - t0, 1))))
