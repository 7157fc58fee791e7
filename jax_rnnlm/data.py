"""Corpus -> word ids -> B parallel streams -> truncated-BPTT windows.

Tokens as ``text`` makes them; the ids of a text file come from the streaming
build and its memory-mapped cache (``idcache``). The vocabulary is built from
the train split alone.

Truncated-BPTT layout: the id stream of M tokens is cut into B contiguous rows
of L = M // B tokens (row i starts at token i·L; the last M mod B tokens are
dropped). Step k takes inputs ``streams[:, kT:kT+T]`` and targets shifted by one,
``streams[:, kT+1:kT+T+1]``; the hidden state of row i flows from window k to
window k+1 because both hold consecutive stretches of the same row.
"""
import dataclasses
from pathlib import Path

import numpy as np

from jax_rnnlm import corpora, idcache
from jax_rnnlm.config import SPLITS
from jax_rnnlm.tokenizer import UNK, DataError
from jax_rnnlm.vocab import Vocab

# Single-file corpora are cut contiguously: the first 90% train, then 5% valid, 5% test.
SPLIT_FRACTIONS = (0.9, 0.05, 0.05)


@dataclasses.dataclass(frozen=True)
class Corpus:
    vocab: Vocab
    train: np.ndarray  # [N_train] int32 ids
    valid: np.ndarray  # [N_valid] int32 ids
    test: np.ndarray   # [N_test] int32 ids
    source: str        # a corpus name, or the absolute path of the text
    level: str = "word"
    identity: dict = dataclasses.field(default_factory=dict)  # file -> SHA-256 of its text


def token_ids(tokens, vocab, *, source="<text>", text=None, level="word"):
    """Token ids [M] int32 (``Vocab.ids``). Unknown tokens map to <unk>; without <unk>
    they are a DataError naming the source and line."""
    ids = vocab.ids(tokens, missing=-1)
    missing = ids < 0
    if missing.any():
        first = tokens[int(np.argmax(missing))]
        where = _line_of(text, first, level)
        raise DataError(f"{source}{where}: token {first!r} is not in the vocabulary "
                        f"built from the train split, and the vocabulary has no {UNK} "
                        f"({int(missing.sum())} unknown tokens in all); {idcache.UNK_ADVICE}")
    return ids


def _line_of(text, token, level):
    if text is None:
        return ""
    for n, line in enumerate(text.splitlines(), 1):
        if (token in line.split()) if level == "word" else (token in line or token == "\n"):
            return f", line {n}"
    return ""


def split_paths(data):
    """{split: path} for a directory holding ptb.{split}.txt or {split}.txt."""
    data = Path(data)
    for pattern in ("ptb.{}.txt", "{}.txt"):
        paths = {s: data / pattern.format(s) for s in SPLITS}
        if all(p.is_file() for p in paths.values()):
            return paths
    raise DataError(f"{data}: expected ptb.train.txt, ptb.valid.txt, ptb.test.txt "
                    f"(or train.txt, valid.txt, test.txt) in this directory")


def resolve_level(data, level=None):
    """The token level: ``level`` if given, else the named corpus's, else word."""
    if level is not None:
        return level
    return corpora.level_of(str(data)) if str(data) in corpora.NAMES else "word"


def canonical_source(data):
    """How a run records its data: a corpus name as it is, a path made absolute (so the
    run's workdir can be used from any directory)."""
    return str(data) if str(data) in corpora.NAMES else str(Path(data).absolute())


def load_corpus(data, level=None, vocab=None, *, min_count=1, max_vocab=0, order="first",
                cache_dir=None, echo=None):
    """Corpus from a named corpus (``corpora.NAMES``: 'ptb', 'wikitext-2', ...), a
    directory of three split files, or one text file cut by SPLIT_FRACTIONS.

    The vocabulary is built from the train split unless ``vocab`` is given
    (scoring text with a trained model's vocabulary): types seen fewer than
    ``min_count`` times, or beyond the ``max_vocab`` most frequent, become <unk>;
    ids in order of first appearance, or with ``order="frequency"`` most frequent
    first (what the adaptive softmax needs). ``level`` None: the named corpus's.
    The ids are memory-mapped arrays from the streaming build and its cache in
    ``cache_dir`` (default ``idcache.cache_home()``); see ``idcache``."""
    level, source = resolve_level(data, level), canonical_source(data)
    path = corpora.fetch(str(data), echo=echo) if str(data) in corpora.NAMES else Path(data)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory (give a directory with "
                        f"{{train,valid,test}}.txt, a text file, or a named corpus: "
                        f"{', '.join(corpora.NAMES)})")
    kw = dict(cache_dir=cache_dir, echo=echo)
    words = None if vocab is None else list(vocab.words)
    identity = {}
    if path.is_dir():
        paths = split_paths(path)
        ids = {}
        ids["train"], words, meta = idcache.cached_ids(
            paths["train"], level, vocab_words=words, min_count=min_count,
            max_vocab=max_vocab, order=order, **kw)
        identity[paths["train"].name] = meta["sha256"]
        for s in ("valid", "test"):
            ids[s], _, meta = idcache.cached_ids(paths[s], level, vocab_words=words, **kw)
            identity[paths[s].name] = meta["sha256"]
    else:
        all_ids, words, meta = idcache.cached_ids(path, level, vocab_words=words,
                                                  train_fraction=SPLIT_FRACTIONS[0],
                                                  min_count=min_count, max_vocab=max_vocab,
                                                  order=order, **kw)
        identity[path.name] = meta["sha256"]
        n_train = int(len(all_ids) * SPLIT_FRACTIONS[0])
        n_valid = int(len(all_ids) * SPLIT_FRACTIONS[1])
        ids = {"train": all_ids[:n_train], "valid": all_ids[n_train:n_train + n_valid],
               "test": all_ids[n_train + n_valid:]}
    return Corpus(vocab or Vocab(tuple(words)), ids["train"], ids["valid"], ids["test"],
                  source, level, identity)


def batchify(ids_M, batch_size, *, source="corpus"):
    """Cut an id stream into B contiguous rows: [M] -> [B, L], L = M // B (row i starts at i·L)."""
    length = len(ids_M) // batch_size
    if length < 2:
        raise DataError(f"{source}: {len(ids_M)} tokens cannot fill {batch_size} streams "
                        f"of at least 2 tokens; use a smaller batch size")
    return np.asarray(ids_M[: batch_size * length]).reshape(batch_size, length)


def num_windows(streams_BL, bptt, *, full_only=False):
    """How many windows of T steps cover the L - 1 targets of each row."""
    targets = streams_BL.shape[1] - 1
    return targets // bptt if full_only else -(-targets // bptt)


def windows(streams_BL, bptt, *, full_only=False):
    """Yield (inputs [B, T], targets [B, T]) for consecutive windows of each row.

    The last window is shorter when T does not divide L - 1, unless
    ``full_only`` (training keeps every window the same shape for one compile).
    """
    for k in range(num_windows(streams_BL, bptt, full_only=full_only)):
        t = k * bptt
        end = min(t + bptt, streams_BL.shape[1] - 1)
        yield streams_BL[:, t:end], streams_BL[:, t + 1:end + 1]


def train_streams(ids_M, batch_size, bptt, *, source="train split"):
    """[B, L] streams for training; DataError unless there is at least one full window."""
    streams = batchify(ids_M, batch_size, source=source)
    if streams.shape[1] - 1 < bptt:
        raise DataError(f"{source}: {len(ids_M)} tokens give {batch_size} streams of "
                        f"{streams.shape[1]} tokens, fewer than one window of bptt={bptt} "
                        f"(+1 target); use a smaller --batch-size or --bptt, or more text")
    return streams
