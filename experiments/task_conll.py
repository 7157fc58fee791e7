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

from jax_rnnlm import heads, seqtrain, tasks
from jax_rnnlm.seq import EncoderConfig, pad_batch

COLUMN = {"pos": "pos", "ner": "ner"}


def featurize(sentences, vocabs):
    """Per sentence an int array [T, 3]: word, casing, suffix ids."""
    w, c, s = ({t: i for i, t in enumerate(v.itos)} for v in vocabs)
    return [np.array([[w.get(tasks.word_key(x), 1), c.get(tasks.casing(x), 1),
                       s.get(tasks.suffix(x), 1)] for x in sent.words], np.int32)
            for sent in sentences]


def prepare(folder, task):
    split = {name: tasks.load_conll(folder / f"eng.{name}") for name in ("train", "testa", "testb")}
    train = split["train"]
    vocabs = (tasks.Vocab.build((tasks.word_key(x) for s in train for x in s.words), min_count=2),
              tasks.Vocab.build(tasks.casing(x) for s in train for x in s.words),
              tasks.Vocab.build((tasks.suffix(x) for s in train for x in s.words), min_count=2))
    tags = tasks.Vocab.build(t for s in train for t in getattr(s, COLUMN[task]))
    data = {}
    for name, sents in split.items():
        feats = featurize(sents, vocabs)
        gold = [np.array(tags.encode(getattr(s, COLUMN[task])), np.int32) for s in sents]
        data[name] = (feats, gold, [getattr(s, COLUMN[task]) for s in sents])
    return data, vocabs, tags


def run(task, *, bidirectional=True, epochs=8, hidden=100, seed=0, echo=print):
    data, vocabs, tags = prepare(tasks.data_path("conll2003/eng.train").parent, task)
    cfg = heads.HeadConfig(EncoderConfig(tuple(len(v) for v in vocabs), (100, 8, 30),
                                         hidden_dim=hidden, bidirectional=bidirectional),
                           num_classes=len(tags), dropout=0.5 if task == "ner" else 0.3)
    params = heads.init_params(jax.random.key(seed), cfg)

    def collate(feats, gold, idx):
        x, lengths = pad_batch([feats[i] for i in idx], multiple=8)
        y, _ = pad_batch([gold[i] for i in idx], width=x.shape[1])
        return x, lengths, y

    def loss_fn(p, batch, key):
        return heads.tagger_loss(p, cfg, *batch, key=key, train=True)

    logits = jax.jit(lambda p, x, l: heads.tagger_logits(p, cfg, x, l))

    def predict(p, name):
        feats, gold, _ = data[name]
        pred = [None] * len(feats)
        for idx in seqtrain.eval_order([len(f) for f in feats], 128):
            x, lengths, _ = collate(feats, gold, idx)
            out = np.asarray(logits(p, x, lengths))[..., 2:].argmax(-1) + 2  # never <pad>/<unk>
            for row, i in enumerate(idx):
                pred[i] = out[row, :lengths[row]]
        return pred

    def evaluate(p):
        out = {}
        for name in ("testa", "testb"):
            pred = predict(p, name)
            gold = data[name][1]
            out[f"{name}_token_acc"] = tasks.accuracy(np.concatenate(pred), np.concatenate(gold))
            if task == "ner":
                out[f"{name}_f1"] = tasks.conll_f1(data[name][2],
                                                   [tags.decode(x) for x in pred])[2]
        return out

    feats, gold, _ = data["train"]
    fit_cfg = seqtrain.FitConfig(epochs=epochs, batch_size=32, lr=2e-3, lr_decay=0.9, seed=seed)
    _, history = seqtrain.fit(loss_fn, params, lambda idx: collate(feats, gold, idx),
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
