"""Streaming corpus build and the memory-mapped id cache.

A text file becomes int32 token ids in passes over chunks of whole lines, so peak
memory is O(vocabulary + one chunk) however long the corpus is:

1. provisional ids: every type numbered by its first appearance, written to disk;
2. the vocabulary, from the train range's counts (``vocab.choose_words``, the
   project's one vocabulary builder): first-appearance order (so with the defaults
   the ids are those ``Vocab.from_tokens`` gives), types seen fewer than
   ``min_count`` times or beyond the ``max_vocab`` most frequent mapped to
   ``<unk>`` (added at the end if the text has none);
3. the final ids, remapped chunk by chunk into a ``.npy`` file.

The ``.npy`` and a small JSON beside it (the vocabulary, the token count) are
written under temporary names and renamed when complete, JSON last: a cache
without its JSON, or whose length disagrees with it, is rebuilt, never read.
The cache key holds the source file's path, size and modification time and
every setting, so an edited file or other settings build a new cache; later
runs open it with ``np.load(mmap_mode="r")`` in milliseconds, and a process
reads only the rows it slices.
"""
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from jax_rnnlm.tokenizer import CHUNK_BYTES, UNK, DataError, text_chunks, tokenize
from jax_rnnlm.vocab import ORDERS, Vocab, choose_words

FORMAT = 2
UNK_ADVICE = (f"pass --min-count 2 or --max-vocab N so that rare train words become {UNK} "
              f"(or add {UNK} to the train text), or fix the text")


def cache_home():
    """$JAX_RNNLM_CACHE if set, else ~/.cache/jax_rnnlm/ids."""
    env = os.environ.get("JAX_RNNLM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "jax_rnnlm" / "ids"


def check_cache_dir(cache_dir):
    """DataError unless ``cache_dir`` (None: ``cache_home()``) is, or can be made, a
    directory: said before any work, not when the first cache is written."""
    path = Path(cache_dir) if cache_dir is not None else cache_home()
    if path.exists() and not path.is_dir():
        raise DataError(f"--data-cache {path}: is a file, not a directory; choose a "
                        f"directory for the id caches")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"--data-cache {path}: cannot be created ({e.strerror or e}); "
                        f"choose a writable directory for the id caches") from None


def provisional_ids(path, level, out_path, chunk_bytes=CHUNK_BYTES):
    """Pass 1: ids by first appearance written to ``out_path`` (raw int32).
    Returns (types in first-appearance order, token count, SHA-256 of the file)."""
    index, count, digest = {}, 0, hashlib.sha256()
    with open(out_path, "wb") as out:
        for _, text in text_chunks(path, chunk_bytes):
            digest.update(text.encode("utf-8"))  # the file's bytes: they decoded strictly
            tokens = tokenize(text, level)
            ids = np.fromiter((index.setdefault(t, len(index)) for t in tokens), np.int32,
                              len(tokens))
            out.write(ids.tobytes())
            count += len(tokens)
    return list(index), count, digest.hexdigest()


def _read_chunks(raw_path, stop, step):
    """Consecutive int32 chunks of a raw file up to ``stop`` ids. Plain reads, not a
    memory map: mapped pages would count in the resident memory of the build."""
    with open(raw_path, "rb") as f:
        for a in range(0, stop, step):
            yield np.fromfile(f, np.int32, count=min(step, stop - a))


def chunked_counts(raw_path, n_types, stop, step=1 << 20):
    """Occurrences of each provisional id in the first ``stop`` ids, [n_types] int64."""
    counts = np.zeros(n_types, np.int64)
    for part in _read_chunks(raw_path, stop, step):
        counts += np.bincount(part, minlength=n_types)
    return counts


def remap(raw_path, count, table, out_path, step=1 << 20):
    """Write the .npy of ``table[raw]``, chunk by chunk. Returns the first position
    mapped to -1 (a token outside the vocabulary, no <unk>), or None."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.int32)),
              "fortran_order": False, "shape": (count,)}
    with open(out_path, "wb") as out:
        np.lib.format.write_array_header_1_0(out, header)
        for a, part in zip(range(0, count, step), _read_chunks(raw_path, count, step)):
            mapped = table[part]
            bad = np.flatnonzero(mapped < 0)
            if len(bad):
                return a + int(bad[0])
            out.write(mapped.tobytes())
    return None


def line_of_token(path, level, position):
    """Line number holding token ``position`` of a file (for error messages)."""
    seen = 0
    for first_line, text in text_chunks(path):
        lines = text.splitlines()
        n = len(tokenize(text, level))
        if seen + n > position:
            for i, line in enumerate(lines):
                seen += len(tokenize(line + "\n", level))
                if seen > position:
                    return first_line + i
        seen += n
    return None


def cache_key(path, **settings):
    st = Path(path).stat()
    record = {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
              "format": FORMAT, **settings}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def vocab_digest(words):
    return hashlib.sha256("\n".join(words).encode()).hexdigest()[:16]


def _with(stem, suffix):
    return stem.parent / (stem.name + suffix)  # stem ends in "file.txt-KEY": no with_suffix


def open_cache(stem):
    """(ids memmap, meta) of a complete cache at ``stem`` (.npy + .json) whose ids all
    lie in its vocabulary, else None."""
    meta_path, ids_path = _with(stem, ".json"), _with(stem, ".npy")
    try:
        meta = json.loads(meta_path.read_text())
        ids = np.load(ids_path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if meta.get("format") != FORMAT or ids.shape != (meta.get("tokens"),) or \
            ids.dtype != np.int32:
        return None
    if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= len(meta.get("vocab", ()))):
        return None
    return ids, meta


def write_cache(stem, build):
    """Run ``build(npy_tmp_path) -> meta`` and publish its .npy, then its .json."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    tmp = stem.parent / f".{stem.name}.{os.getpid()}.tmp.npy"
    try:
        meta = build(tmp)
        tmp.replace(_with(stem, ".npy"))
        meta_tmp = stem.parent / f".{stem.name}.{os.getpid()}.tmp.json"
        meta_tmp.write_text(json.dumps({"format": FORMAT, **meta}))
        meta_tmp.replace(_with(stem, ".json"))
    finally:
        tmp.unlink(missing_ok=True)


def cached_ids(path, level, *, vocab_words=None, train_fraction=1.0, min_count=1,
               max_vocab=0, order="first", cache_dir=None, echo=None):
    """(ids memmap [M] int32, vocabulary words, meta) of a text file, from its cache or
    built (and cached) by the streaming passes.

    Without ``vocab_words`` the vocabulary comes from the first ``train_fraction``
    of the file's tokens (1: all of it; ``vocab.choose_words``); with it, those words
    are the vocabulary and a token outside it maps to ``<unk>`` (DataError naming the
    line without one)."""
    if order not in ORDERS:
        raise ValueError(f"vocabulary order must be one of {ORDERS}, got {order!r}")
    settings = {"level": level, "min_count": min_count, "max_vocab": max_vocab, "order": order,
                "train_fraction": train_fraction,
                "given_vocab": vocab_digest(vocab_words) if vocab_words is not None else None}
    stem = Path(cache_dir or cache_home()) / f"{Path(path).name}-{cache_key(path, **settings)}"
    found = open_cache(stem)
    if found is not None:
        return found[0], found[1]["vocab"], found[1]
    if _with(stem, ".npy").exists() and echo:
        echo(f"{stem}.npy: incomplete or damaged id cache (or ids outside its vocabulary); "
             f"rebuilding it")

    def build(tmp):
        raw_path = tmp.with_suffix(".raw")
        try:
            types, count, sha256 = provisional_ids(path, level, raw_path)
            words = vocab_words
            if words is None:
                counts = chunked_counts(raw_path, len(types), int(count * train_fraction))
                words = choose_words(types, counts, min_count=min_count, max_vocab=max_vocab,
                                     order=order)
            bad = remap(raw_path, count, Vocab(tuple(words)).ids(types, missing=-1), tmp)
            if bad is not None:
                token = types[int(np.fromfile(raw_path, np.int32, 1, offset=4 * bad)[0])]
                raise DataError(f"{path}, line {line_of_token(path, level, bad)}: token "
                                f"{token!r} is not in the vocabulary built from the train "
                                f"split, and the vocabulary has no {UNK}; {UNK_ADVICE}")
            return {"source": str(path), "tokens": count, "vocab": list(words),
                    "sha256": sha256, **settings}
        finally:
            raw_path.unlink(missing_ok=True)

    write_cache(stem, build)
    found = open_cache(stem)
    return found[0], found[1]["vocab"], found[1]
