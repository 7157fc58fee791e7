"""The one vocabulary builder (``vocab.choose_words``) and the one token -> id mapping."""
import collections

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jax_rnnlm import idcache
from jax_rnnlm.tokenizer import RESERVED, UNK, DataError
from jax_rnnlm.vocab import Vocab, choose_words

TOKENS = st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f", "g", UNK]), min_size=1,
                  max_size=60)


def counted(tokens):
    counter = collections.Counter(tokens)  # insertion order = first appearance
    return list(counter), list(counter.values())


@settings(max_examples=60)
@given(TOKENS, st.integers(1, 4), st.sampled_from([0, 2, 3, 5, 8]),
       st.sampled_from(["first", "frequency"]))
def test_chosen_words_obey_every_setting(tokens, min_count, max_vocab, order):
    types, counts = counted(tokens)
    count = dict(zip(types, counts))
    words = choose_words(types, counts, min_count=min_count, max_vocab=max_vocab, order=order)
    assert len(set(words)) == len(words)
    if max_vocab:
        assert len(words) <= max_vocab
    kept = [w for w in words if w in count and (w != UNK or count[UNK] >= min_count)]
    assert all(count[w] >= min_count for w in kept)
    cut = set(types) - set(words)
    assert (UNK in words) == (bool(cut) or UNK in count)  # the text's, or appended
    # nothing kept is rarer than something cut (ties: the earlier first appearance wins);
    # the text's own <unk> is kept whatever its count
    for w in set(kept) - {UNK}:
        for c in cut - {UNK}:
            assert (count[w], -types.index(w)) > (count[c], -types.index(c)) or \
                count[c] < min_count
    own = [w for w in words if w in count]
    key = (lambda w: types.index(w)) if order == "first" else \
        (lambda w: (-count[w], types.index(w)))
    if not (UNK in words and UNK not in kept):  # an appended <unk> comes last
        assert own == sorted(own, key=key)


@given(TOKENS)
def test_without_limits_every_type_is_kept_in_first_appearance_order(tokens):
    types, counts = counted(tokens)
    assert choose_words(types, counts) == types
    assert Vocab.from_tokens(tokens).words == tuple(dict.fromkeys(tokens))


def test_max_vocab_counts_unk_and_keeps_the_most_frequent():
    tokens = list("aaaabbbccd")
    assert choose_words(*counted(tokens), max_vocab=3) == ["a", "b", UNK]
    assert choose_words(*counted(tokens), max_vocab=4) == ["a", "b", "c", "d"]
    assert choose_words(*counted(tokens + [UNK]), max_vocab=3) == ["a", "b", UNK]


def test_task_vocabularies_put_reserved_first_and_break_ties_by_first_appearance():
    v = Vocab.by_frequency(["b", "a", "c", "a", "b", "z"])
    assert v.words == RESERVED + ("b", "a", "c", "z")
    assert Vocab.by_frequency(["x", "y", "y"], min_count=2).words == RESERVED + ("y",)


def test_the_streaming_build_uses_the_same_builder(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("b a b c\nc c d\n")
    ids, words, _ = idcache.cached_ids(text, "word", min_count=2, order="frequency",
                                       cache_dir=tmp_path / "cache")
    tokens = "b a b c <eos> c c d <eos>".split()
    assert words == choose_words(*counted(tokens), min_count=2, order="frequency")
    np.testing.assert_array_equal(ids, Vocab(tuple(words)).ids(tokens))


def test_ids_map_unknown_tokens_to_unk_or_refuse_without_it():
    with_unk = Vocab(("a", UNK))
    np.testing.assert_array_equal(with_unk.ids(["a", "zz", "a"]), [0, 1, 0])
    assert with_unk.ids(["a"]).dtype == np.int32
    without = Vocab(("a", "b"))
    with pytest.raises(DataError, match="'zz' is not in the vocabulary"):
        without.ids(["a", "zz"])
    np.testing.assert_array_equal(without.ids(["zz", "b"], missing=-1), [-1, 1])
