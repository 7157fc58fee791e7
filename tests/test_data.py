"""Corpus reading, vocabulary, the truncated-BPTT layout and the errors for bad input."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jax_rnnlm import corpora, data, tokenizer
from jax_rnnlm.tokenizer import DataError


def test_streams_and_windows_match_a_hand_computed_example():
    ids = np.arange(23)  # N = 23, B = 3 -> L = 7, tokens 21 and 22 are dropped
    streams = data.batchify(ids, 3)
    np.testing.assert_array_equal(streams, [[0, 1, 2, 3, 4, 5, 6],
                                            [7, 8, 9, 10, 11, 12, 13],
                                            [14, 15, 16, 17, 18, 19, 20]])
    got = list(data.windows(streams, 4))  # L - 1 = 6 targets per row: windows of 4 and 2
    np.testing.assert_array_equal(got[0][0], [[0, 1, 2, 3], [7, 8, 9, 10], [14, 15, 16, 17]])
    np.testing.assert_array_equal(got[0][1], [[1, 2, 3, 4], [8, 9, 10, 11], [15, 16, 17, 18]])
    np.testing.assert_array_equal(got[1][0], [[4, 5], [11, 12], [18, 19]])
    np.testing.assert_array_equal(got[1][1], [[5, 6], [12, 13], [19, 20]])
    assert len(list(data.windows(streams, 4, full_only=True))) == 1


@settings(max_examples=30, deadline=None)
@given(n=st.integers(4, 200), b=st.integers(1, 6), t=st.integers(1, 9))
def test_windows_score_every_target_of_every_row_once(n, b, t):
    if n // b < 2:
        return
    streams = data.batchify(np.arange(n), b)
    ins = np.concatenate([x for x, _ in data.windows(streams, t)], axis=1)
    outs = np.concatenate([y for _, y in data.windows(streams, t)], axis=1)
    np.testing.assert_array_equal(ins, streams[:, :-1])
    np.testing.assert_array_equal(outs, streams[:, 1:])


def test_word_tokens_end_each_line_with_eos():
    assert tokenizer.tokenize(" a b \n c\n", "word") == ["a", "b", "<eos>", "c", "<eos>"]
    assert tokenizer.tokenize("ab\n", "char") == ["a", "b", "\n"]


def test_vocab_comes_from_train_in_order_of_first_appearance(tiny_corpus_dir):
    corpus = data.load_corpus(tiny_corpus_dir)
    assert corpus.vocab.words[:4] == ("the", "cat", "sat", "on")
    assert corpus.vocab.words[corpus.train[0]] == "the"
    assert len(corpus.train) == 14 * (7 + 7 + 6)  # 14 copies of 3 lines, <eos> included


def test_ptb_has_the_standard_sizes():
    corpus = data.load_corpus("ptb")
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (929589, 73760, 82430)
    assert len(corpus.vocab) == 10000


def test_single_file_is_split_by_the_documented_fractions(tmp_path):
    path = tmp_path / "input.txt"
    path.write_text("abcdefghij" * 100)
    corpus = data.load_corpus(path, "char")
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (900, 50, 50)
    assert len(corpus.vocab) == 10


def test_missing_path_names_it(tmp_path):
    with pytest.raises(DataError, match="nowhere: no such file or directory"):
        data.load_corpus(tmp_path / "nowhere")


def test_directory_without_split_files_says_what_it_expects(tmp_path):
    with pytest.raises(DataError, match="expected ptb.train.txt"):
        data.load_corpus(tmp_path)


def test_empty_file_names_it(tiny_corpus_dir):
    (tiny_corpus_dir / "valid.txt").write_text("  \n")
    with pytest.raises(DataError, match=r"valid.txt: file is empty"):
        data.load_corpus(tiny_corpus_dir)


def test_non_utf8_names_file_line_and_byte(tiny_corpus_dir):
    (tiny_corpus_dir / "test.txt").write_bytes(b"fine line\nbad \xff byte\n")
    with pytest.raises(DataError, match=r"test.txt: not UTF-8 text: byte 0xff at byte "
                                        r"offset 14 \(line 2\)"):
        data.load_corpus(tiny_corpus_dir)


def test_unknown_word_without_unk_names_file_and_line(tiny_corpus_dir):
    (tiny_corpus_dir / "valid.txt").write_text("the cat\nthe zebra sat\n")
    with pytest.raises(DataError, match=r"valid.txt, line 2: token 'zebra' is not in the "
                                        r"vocabulary"):
        data.load_corpus(tiny_corpus_dir)


def test_unknown_word_maps_to_unk_when_the_vocab_has_it(tiny_corpus_dir):
    (tiny_corpus_dir / "train.txt").write_text("the <unk> cat\n" * 20)
    (tiny_corpus_dir / "valid.txt").write_text("the zebra cat\n")
    corpus = data.load_corpus(tiny_corpus_dir)
    assert corpus.vocab.words[corpus.valid[1]] == "<unk>"


def test_split_shorter_than_one_window_is_refused():
    with pytest.raises(DataError, match="fewer than one window of bptt=35"):
        data.train_streams(np.arange(100), batch_size=20, bptt=35, source="train split")
    with pytest.raises(DataError, match="cannot fill 20 streams"):
        data.batchify(np.arange(30), 20, source="valid split")


def test_named_corpus_offline_says_where_to_put_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("JAX_RNNLM_DATA", str(tmp_path))
    monkeypatch.setattr(corpora.urllib.request, "urlopen",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("network unreachable")))
    with pytest.raises(DataError, match=rf"{tmp_path}/ptb/ptb.train.txt: missing and could "
                                        r"not be downloaded .* set JAX_RNNLM_DATA"):
        data.load_corpus("ptb")


def test_named_corpus_with_wrong_checksum_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("JAX_RNNLM_DATA", str(tmp_path))
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / "tinyshakespeare" / "input.txt").write_text("not shakespeare")
    with pytest.raises(DataError, match="does not match the published file"):
        data.load_corpus("tinyshakespeare", "char")
