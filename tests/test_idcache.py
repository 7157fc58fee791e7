"""The streaming corpus build and its memory-mapped id cache."""
import hashlib
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jax_rnnlm import data, idcache, tokenizer

WORDS = st.sampled_from(["the", "cat", "sat", "é", "日本", "<unk>", "a", "b"])
LINES = st.lists(st.lists(WORDS, max_size=6).map(" ".join), min_size=1, max_size=30)


def ids_from_text(path, level, vocab=None):
    text = tokenizer.read_text(path)
    tokens = tokenizer.tokenize(text, level)
    vocab = vocab or data.Vocab.from_tokens(tokens)
    return data.token_ids(tokens, vocab), vocab


@settings(max_examples=15)
@given(lines=LINES, level=st.sampled_from(["word", "char"]), chunk=st.integers(1, 40),
       newline=st.sampled_from(["\n", "\r\n"]))
def test_ids_from_the_cache_equal_ids_from_the_text(tmp_path_factory, lines, level, chunk,
                                                    newline):
    root = tmp_path_factory.mktemp("c")
    path = root / "train.txt"
    path.write_bytes((newline.join(lines) + newline).encode())
    if not path.read_text().strip():
        return
    ids, words, _ = idcache.cached_ids(path, level, cache_dir=root / "cache")
    expected, vocab = ids_from_text(path, level)
    assert list(words) == list(vocab.words)
    np.testing.assert_array_equal(ids, expected)
    # chunks of a few bytes split lines in every place: the same ids
    types, count, sha = idcache.provisional_ids(path, level, root / "raw", chunk_bytes=chunk)
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    assert count == len(expected) and types == list(vocab.words)


def test_a_second_load_opens_the_cache_without_reading_the_text(tmp_path, monkeypatch):
    path = tmp_path / "train.txt"
    path.write_text("a b c\nb c d\n" * 50)
    first, _, _ = idcache.cached_ids(path, "word", cache_dir=tmp_path / "cache")
    monkeypatch.setattr(idcache, "provisional_ids", lambda *a, **k: pytest.fail("rebuilt"))
    again, _, _ = idcache.cached_ids(path, "word", cache_dir=tmp_path / "cache")
    assert isinstance(again, np.memmap)
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("damage", ["truncate", "drop_json", "corrupt_json"])
def test_a_damaged_cache_is_rebuilt_never_read(tmp_path, damage):
    path = tmp_path / "train.txt"
    path.write_text("a b c\nb c d\n" * 50)
    cache = tmp_path / "cache"
    good, _, _ = idcache.cached_ids(path, "word", cache_dir=cache)
    good = np.array(good)
    npy, meta = next(cache.glob("*.npy")), next(cache.glob("*.json"))
    if damage == "truncate":
        npy.write_bytes(npy.read_bytes()[:-40])
    elif damage == "drop_json":
        meta.unlink()
    else:
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "tokens": 3}))
    said = []
    ids, _, _ = idcache.cached_ids(path, "word", cache_dir=cache, echo=said.append)
    np.testing.assert_array_equal(ids, good)
    assert said and "rebuilding" in said[0]


def test_an_edited_source_gets_a_new_cache(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("a b\n")
    idcache.cached_ids(path, "word", cache_dir=tmp_path / "cache")
    path.write_text("a b c\n")
    ids, words, _ = idcache.cached_ids(path, "word", cache_dir=tmp_path / "cache")
    assert words == ["a", "b", "c", "<eos>"] and list(ids) == [0, 1, 2, 3]


def test_min_count_max_vocab_and_frequency_order(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("x y y z z z\n")  # counts: x 1, y 2, z 3, <eos> 1
    kw = dict(cache_dir=tmp_path / "cache")
    assert idcache.cached_ids(path, "word", min_count=2, **kw)[1] == ["y", "z", "<unk>"]
    assert idcache.cached_ids(path, "word", max_vocab=3, **kw)[1] == ["y", "z", "<unk>"]
    ids, words, _ = idcache.cached_ids(path, "word", order="frequency", **kw)
    assert words == ["z", "y", "x", "<eos>"]
    assert [words[i] for i in ids] == "x y y z z z <eos>".split()
    ids, words, _ = idcache.cached_ids(path, "word", min_count=2, order="frequency", **kw)
    assert [words[i] for i in ids] == "<unk> y y z z z <unk>".split()


def test_the_vocabulary_of_a_single_file_comes_from_its_train_part(tmp_path):
    path = tmp_path / "all.txt"
    path.write_text("a b\n" * 18 + "c\n" * 2)  # the last 10% of tokens: "c <eos>" twice
    with pytest.raises(tokenizer.DataError, match=r"all.txt, line 19: token 'c' is not in the "
                                                  r"vocabulary built from the train split"):
        data.load_corpus(path, cache_dir=tmp_path / "cache")
    path.write_text("a b <unk>\n" * 18 + "c\n" * 2)
    corpus = data.load_corpus(path, cache_dir=tmp_path / "cache")
    assert "c" not in corpus.vocab.words
    assert [corpus.vocab.words[i] for i in corpus.test[-4:]] == ["<unk>", "<eos>"] * 2


def test_peak_memory_stays_flat_as_the_corpus_grows(tmp_path):
    """8M tokens (the old in-memory loader: ~79 bytes a token, 630 MB): the build's peak
    resident memory grows by less than 60 MB over the interpreter's, in a subprocess."""
    path = tmp_path / "big.txt"
    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(5000)])
    with path.open("w") as f:
        for _ in range(40):
            f.write("\n".join(" ".join(line) for line in
                              words[rng.zipf(1.3, (2000, 100)) % 5000]) + "\n")
    script = textwrap.dedent(f"""
        import resource, sys
        from jax_rnnlm import idcache
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        ids, words, meta = idcache.cached_ids({str(path)!r}, "word", cache_dir={str(tmp_path)!r})
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(len(ids), (after - before) // 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.split()
    tokens, grew_mb = int(out[0]), int(out[1])
    assert tokens == 8_080_000 and grew_mb < 60, f"peak RSS grew by {grew_mb} MB"
