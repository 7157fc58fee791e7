"""Data and metrics for the non-LM tasks: SMS spam, CoNLL-2003, the textbook's seq2seq toys.

Loaders take a path and return plain Python records; a malformed line is a
``DataError`` naming the file and line. ``data_path("sms_spam/SMSSpamCollection")``
resolves a file under $JAX_RNNLM_DATA (default ~/.cache/jax_rnnlm). Nothing is
copied: the data stays where it is.
"""
import re
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jax_rnnlm.data import DataError, data_home

PAD, UNK = "<pad>", "<unk>"
BOS, EOS = "<bos>", "<eos>"


def data_path(relative):
    """A file of the shared data folder ($JAX_RNNLM_DATA), e.g. 'seq2seq/date.txt'."""
    path = data_home() / relative
    if not path.is_file():
        raise DataError(f"{path}: no such file (set JAX_RNNLM_DATA to the folder holding "
                        f"{relative})")
    return path


def _lines(path):
    """(line number, text without newline) of a UTF-8 file; DataError if missing or empty."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    return enumerate(text.split("\n"), 1)


# ---------------------------------------------------------------- vocabularies

class Vocab(NamedTuple):
    """Token <-> id; reserved tokens first (PAD is always 0)."""
    itos: tuple

    @classmethod
    def build(cls, tokens, reserved=(PAD, UNK), min_count=1):
        """Reserved tokens, then tokens seen >= min_count times, most frequent first."""
        counts = Counter(tokens)
        kept = sorted((t for t, n in counts.items() if n >= min_count and t not in reserved),
                      key=lambda t: (-counts[t], t))
        return cls(tuple(reserved) + tuple(kept))

    @property
    def stoi(self):
        return {t: i for i, t in enumerate(self.itos)}

    def __len__(self):
        return len(self.itos)

    def encode(self, tokens, stoi=None):
        """Ids of tokens; unknown ones map to UNK (KeyError if this vocab has none)."""
        stoi = stoi or self.stoi
        unk = stoi.get(UNK)
        return [stoi.get(t, unk) if unk is not None else stoi[t] for t in tokens]

    def decode(self, ids):
        return [self.itos[i] for i in ids]


# ---------------------------------------------------------------- SMS spam (many-to-one)

def load_sms(path):
    """[(label, message)] from 'label<TAB>message' lines, label in {ham, spam}."""
    records = []
    for n, line in _lines(path):
        if not line.strip():
            continue
        label, tab, message = line.partition("\t")
        if not tab or label not in ("ham", "spam"):
            raise DataError(f"{path}, line {n}: expected 'ham<TAB>text' or 'spam<TAB>text', "
                            f"got {line[:40]!r}")
        records.append((label, message))
    return records


def sms_tokens(message):
    """Lower-cased words and single punctuation marks; every digit becomes 0.

    Digits are folded so that phone numbers and prize amounts (strong spam
    cues) share tokens by their shape instead of being one-off words.
    """
    return re.findall(r"[a-z0-9]+|[^\sa-z0-9]", re.sub(r"[0-9]", "0", message.lower()))


def stratified_split(labels, test_fraction=0.2, seed=0):
    """(train_idx, test_idx): each class shuffled with ``seed``, its last fraction is test."""
    labels = np.asarray(labels)
    rng = np.random.RandomState(seed)
    train, test = [], []
    for c in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_test = int(round(len(idx) * test_fraction))
        train.append(idx[:len(idx) - n_test])
        test.append(idx[len(idx) - n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


# ---------------------------------------------------------------- CoNLL-2003 (many-to-many)

class Sentence(NamedTuple):
    words: tuple
    pos: tuple
    chunk: tuple
    ner: tuple      # IOB1


def load_conll(path):
    """Sentences of a CoNLL-2003 file ('word POS chunk NER' lines; blank line ends a sentence)."""
    sentences, rows = [], []
    for n, line in _lines(path):
        if not line.strip():
            if rows:
                sentences.append(Sentence(*map(tuple, zip(*rows))))
                rows = []
            continue
        cols = line.split()
        if len(cols) != 4:
            raise DataError(f"{path}, line {n}: expected 4 columns 'word POS chunk NER', "
                            f"got {len(cols)}: {line[:60]!r}")
        if cols[0] == "-DOCSTART-":
            continue
        rows.append(cols)
    if rows:
        sentences.append(Sentence(*map(tuple, zip(*rows))))
    return sentences


def word_key(word):
    """Lower-cased word with digits folded to 0: the word-embedding key."""
    return re.sub(r"[0-9]", "0", word.lower())


def casing(word):
    """Shape class of a word: case carries much of NER without character models."""
    if word.isdigit():
        return "digits"
    if any(c.isdigit() for c in word):
        return "has_digit"
    if not any(c.isalpha() for c in word):
        return "punct"
    if word.islower():
        return "lower"
    if word.isupper():
        return "upper"
    if word[0].isupper():
        return "title"
    return "mixed"


def suffix(word, n=3):
    return word_key(word)[-n:]


# ---------------------------------------------------------------- seq2seq toys

def load_seq2seq(path):
    """[(question, answer)] from 'question_answer' lines; padding spaces are stripped."""
    pairs = []
    for n, line in _lines(path):
        if not line.strip():
            continue
        question, sep, answer = line.partition("_")
        if not sep or not question.strip() or not answer.strip():
            raise DataError(f"{path}, line {n}: expected 'question_answer' with a '_' "
                            f"between two non-empty parts, got {line[:50]!r}")
        pairs.append((question.rstrip(), answer.strip()))
    return pairs


def textbook_split(n, seed=1984):
    """(train_idx, test_idx) as the numpy textbook's ``sequence.load_data``: shuffle with
    ``np.random.seed(seed)``, last tenth is test (45,000 / 5,000 for 50,000 lines)."""
    idx = np.arange(n)
    np.random.RandomState(seed).shuffle(idx)
    split_at = n - n // 10
    return idx[:split_at], idx[split_at:]


# ---------------------------------------------------------------- metrics

def accuracy(pred, gold):
    pred, gold = np.asarray(pred), np.asarray(gold)
    return float(np.mean(pred == gold)) if len(gold) else float("nan")


def precision_recall_f1(pred, gold, positive):
    """Precision, recall and F1 of the ``positive`` class (0.0 where undefined)."""
    pred, gold = np.asarray(pred) == positive, np.asarray(gold) == positive
    tp = int(np.sum(pred & gold))
    p = tp / max(int(pred.sum()), 1)
    r = tp / max(int(gold.sum()), 1)
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def iob1_spans(tags):
    """Entity chunks {(start, end_exclusive, type)} of an IOB1 (or IOB2) tag sequence.

    conlleval's rules: a chunk starts at B-X, or at I-X after O or after a tag of
    another type; it ends before O, before any B-, or before a change of type.
    """
    spans, start, kind = set(), None, None
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, typ = tag.partition("-")
        if prefix not in ("B", "I", "O") or (prefix != "O" and not typ):
            raise ValueError(f"tag {tag!r} at position {i} is not O, B-TYPE or I-TYPE")
        begins = prefix == "B" or (prefix == "I" and typ != kind)
        if start is not None and (prefix == "O" or begins):
            spans.add((start, i, kind))
            start, kind = None, None
        if begins:
            start, kind = i, typ
    return spans


def conll_f1(gold_seqs, pred_seqs):
    """Entity-level (precision, recall, F1) in percent: a hit is an exact span and type match."""
    n_gold = n_pred = hits = 0
    for gold, pred in zip(gold_seqs, pred_seqs):
        g, p = iob1_spans(gold), iob1_spans(pred)
        n_gold, n_pred, hits = n_gold + len(g), n_pred + len(p), hits + len(g & p)
    prec = 100.0 * hits / max(n_pred, 1)
    rec = 100.0 * hits / max(n_gold, 1)
    return prec, rec, (2 * prec * rec / (prec + rec) if prec + rec else 0.0)
