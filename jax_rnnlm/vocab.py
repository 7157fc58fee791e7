"""The vocabulary: one way to choose the kept types, one token -> id mapping.

Every vocabulary of the project comes from ``choose_words`` (the language models'
from the train split's counts in the streaming corpus build, the sequence tasks'
through ``Vocab.by_frequency``), and every token becomes an id through
``Vocab.ids``, so a model is never scored with ids made by another path than the
ones it trained on.
"""
import collections
import dataclasses
import functools

import numpy as np

from jax_rnnlm.tokenizer import RESERVED, UNK, DataError

ORDERS = ("first", "frequency")


def choose_words(types, counts, *, min_count=1, max_vocab=0, order="first", reserved=()):
    """The kept types: ``reserved`` first, then the types seen at least ``min_count``
    times (at most ``max_vocab`` words in all, 0: no limit, the most frequent kept),
    in first-appearance order or, with ``order="frequency"``, most frequent first;
    ties always go to the earlier first appearance. ``<unk>`` is appended if a seen
    type is cut and neither the text nor ``reserved`` has it.

    types: [K] the distinct tokens in order of first appearance; counts: [K] their
    occurrences (0: not seen in the part the vocabulary is built from)."""
    if order not in ORDERS:
        raise ValueError(f"vocabulary order must be one of {ORDERS}, got {order!r}")
    counts = np.asarray(counts, np.int64)
    is_reserved = np.array([t in reserved for t in types], bool)
    seen = counts > 0
    keep = seen & (counts >= min_count) & ~is_reserved
    by_count = np.lexsort((np.arange(len(types)), -counts))  # most frequent, then earliest
    unk_in = UNK in reserved or (UNK in types and keep[types.index(UNK)])
    needs_unk = not unk_in and (seen & ~keep & ~is_reserved).any()
    if max_vocab and len(reserved) + keep.sum() + needs_unk > max_vocab:
        # too many: the most frequent others, and one place kept for <unk>
        room = max_vocab - len(reserved) - (0 if UNK in reserved else 1)
        others = [i for i in by_count[keep[by_count]] if types[i] != UNK]
        unk = [types.index(UNK)] if UNK in types and keep[types.index(UNK)] else []
        keep = np.zeros_like(keep)
        keep[np.array(others[:max(room, 0)] + unk, dtype=np.int64)] = True
    ranked = by_count if order == "frequency" else np.arange(len(types))
    words = list(reserved) + [types[i] for i in ranked if keep[i]]
    if (seen & ~keep & ~is_reserved).any() and UNK not in words:
        words.append(UNK)
    return words


@dataclasses.dataclass(frozen=True)
class Vocab:
    """Token <-> id, for the language models and the sequence tasks alike."""
    words: tuple  # id -> token

    @classmethod
    def from_tokens(cls, tokens):
        """Every type, ids in order of first appearance (the LM vocabulary of a train split)."""
        counter = collections.Counter(tokens)
        return cls(tuple(choose_words(list(counter), list(counter.values()))))

    @classmethod
    def by_frequency(cls, tokens, reserved=RESERVED, min_count=1):
        """``reserved`` first (PAD_ID, BOS_ID, ... hold), then tokens seen at least
        ``min_count`` times, most frequent first (ties: first appearance)."""
        counter = collections.Counter(tokens)
        return cls(tuple(choose_words(list(counter), list(counter.values()),
                                      min_count=min_count, order="frequency",
                                      reserved=tuple(reserved))))

    @functools.cached_property
    def index(self):
        return {w: i for i, w in enumerate(self.words)}

    @property
    def unk_id(self):
        """Id of <unk>, or None if this vocabulary has none."""
        return self.index.get(UNK)

    def ids(self, tokens, *, missing=None):
        """Ids [M] int32 of ``tokens``; a token outside the vocabulary maps to <unk>.
        Without <unk> it is a DataError naming the token, or the id ``missing`` when
        given (the caller then says where the token was)."""
        index, unk = self.index, self.unk_id
        fill = unk if unk is not None else (-1 if missing is None else missing)
        ids = np.fromiter((index.get(t, fill) for t in tokens), np.int32)
        if unk is None and missing is None and (ids < 0).any():
            bad = [t for t in tokens if t not in index]
            raise DataError(f"token {bad[0]!r} is not in the vocabulary, which has no {UNK} "
                            f"({len(bad)} unknown tokens in all)")
        return ids

    def tokens(self, ids):
        return [self.words[i] for i in ids]

    def __len__(self):
        return len(self.words)
