"""Loaders on small slices of the shared data ($JAX_RNNLM_DATA), their errors, the splits,
and the task vocabulary (``data.Vocab.by_frequency``)."""
import itertools
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jax_rnnlm import data, tokenizer
from jax_rnnlm.tokenizer import DataError
from jax_rnnlm.seqtasks import datasets

DATA = Path(os.environ["JAX_RNNLM_DATA"])


def head(relative, n, tmp_path):
    """The first n lines of a shared data file, written to tmp_path (the data stays read-only)."""
    with open(DATA / relative, encoding="utf-8") as f:
        lines = list(itertools.islice(f, n))
    path = tmp_path / Path(relative).name
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_sms_loader_reads_labels_and_messages(tmp_path):
    records = datasets.load_sms(head("sms_spam/SMSSpamCollection", 50, tmp_path))
    assert len(records) == 50
    assert records[0] == ("ham", "Go until jurong point, crazy.. Available only in bugis n great "
                                 "world la e buffet... Cine there got amore wat...")
    assert {label for label, _ in records} == {"ham", "spam"}


def test_sms_loader_names_file_and_line_of_a_bad_label(tmp_path):
    path = tmp_path / "sms.txt"
    path.write_text("ham\thello\nmaybe\tspam?\n")
    with pytest.raises(DataError, match=r"sms.txt, line 2: expected 'ham<TAB>text'"):
        datasets.load_sms(path)


def test_sms_tokens_fold_digits_and_keep_punctuation():
    assert datasets.sms_tokens("Call 0800 NOW!") == ["call", "0000", "now", "!"]


def test_conll_loader_skips_docstart_and_splits_sentences(tmp_path):
    sents = datasets.load_conll(head("conll2003/eng.testb", 40, tmp_path))
    assert sents[0].words[:3] == ("SOCCER", "-", "JAPAN")
    assert sents[0].pos[:3] == ("NN", ":", "NNP")
    assert sents[0].ner[:3] == ("O", "O", "I-LOC")
    assert all(len(s.words) == len(s.pos) == len(s.chunk) == len(s.ner) > 0 for s in sents)
    assert not any("-DOCSTART-" in s.words for s in sents)


def test_conll_loader_names_file_and_line_of_a_short_row(tmp_path):
    path = tmp_path / "eng.bad"
    path.write_text("EU NNP I-NP I-ORG\nrejects VBZ I-VP\n")
    with pytest.raises(DataError, match=r"eng.bad, line 2: expected 4 columns"):
        datasets.load_conll(path)


@pytest.mark.parametrize("name,first", [("addition.txt", ("16+75", "91")),
                                        ("date.txt", ("september 27, 1994", "1994-09-27"))])
def test_seq2seq_loader_strips_the_fixed_width_padding(tmp_path, name, first):
    pairs = datasets.load_seq2seq(head(f"seq2seq/{name}", 30, tmp_path))
    assert len(pairs) == 30 and pairs[0] == first


def test_seq2seq_loader_names_file_and_line_without_separator(tmp_path):
    path = tmp_path / "add.txt"
    path.write_text("1+1  _2  \n2+2   4  \n")
    with pytest.raises(DataError, match=r"add.txt, line 2: expected 'question_answer'"):
        datasets.load_seq2seq(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        datasets.load_sms(tmp_path / "nope")


def test_textbook_split_is_45000_5000_and_matches_numpy_global_seed_shuffle():
    train, test = datasets.textbook_split(50000)
    assert (len(train), len(test)) == (45000, 5000)
    saved = np.random.get_state()  # other tests must not see the global seed change
    try:
        np.random.seed(1984)  # the textbook's sequence.load_data
        idx = np.arange(50000)
        np.random.shuffle(idx)
    finally:
        np.random.set_state(saved)
    np.testing.assert_array_equal(np.concatenate([train, test]), idx)


@settings(max_examples=20)
@given(labels=st.lists(st.sampled_from([0, 1]), min_size=2, max_size=60), seed=st.integers(0, 9))
def test_stratified_split_is_a_partition_keeping_each_class_fraction(labels, seed):
    train, test = datasets.stratified_split(labels, 0.2, seed)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(labels)))
    labels = np.array(labels)
    for c in (0, 1):
        assert np.sum(labels[test] == c) == int(round(np.sum(labels == c) * 0.2))


def test_task_vocab_puts_reserved_first_and_maps_unknown_to_unk():
    v = data.Vocab.by_frequency(["b", "a", "b"])
    assert v.words == tokenizer.RESERVED + ("b", "a")
    assert (tokenizer.PAD_ID, tokenizer.BOS_ID, tokenizer.EOS_ID, tokenizer.UNK_ID) == tuple(
        v.index[t] for t in (tokenizer.PAD, tokenizer.BOS, tokenizer.EOS, tokenizer.UNK))
    first = len(tokenizer.RESERVED)  # the first id of a word
    assert v.ids(["a", "zzz"]).tolist() == [first + 1, v.unk_id]
    assert v.unk_id == tokenizer.UNK_ID
    assert v.tokens(v.ids(["b", "a"])) == ["b", "a"]
