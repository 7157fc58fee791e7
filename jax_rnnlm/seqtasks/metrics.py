"""Metrics of the sequence tasks: accuracy, precision/recall/F1 of one class, and the
CoNLL entity F1 (exact span and type, IOB1 tags read by conlleval's rules)."""
import numpy as np


def accuracy(pred, gold):
    """Fraction of positions where pred equals gold (NaN for none)."""
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
