"""Data sets of the sequence tasks: SMS spam, CoNLL-2003, the textbook's seq2seq toys,
and their train/test splits.

Loaders take a path and return plain Python records; a malformed line is a
``DataError`` naming the file and line. ``data_path("sms_spam/SMSSpamCollection")``
resolves a file under $JAX_RNNLM_DATA (default ~/.cache/jax_rnnlm). Nothing is
copied: the data stays where it is. Token ids come from ``data.Vocab``.
"""
import re
from typing import NamedTuple

import numpy as np

from jax_rnnlm.corpora import data_home
from jax_rnnlm.tokenizer import DataError, read_text


def data_path(relative):
    """A file of the shared data folder ($JAX_RNNLM_DATA), e.g. 'seq2seq/date.txt'."""
    path = data_home() / relative
    if not path.is_file():
        raise DataError(f"{path}: no such file (set JAX_RNNLM_DATA to the folder holding "
                        f"{relative})")
    return path


def _lines(path):
    """(line number, text without newline) of a UTF-8 file; DataError if missing, empty
    or not UTF-8 (``tokenizer.read_text``). Windows line ends count as newlines."""
    return enumerate(read_text(path).replace("\r\n", "\n").split("\n"), 1)


def _filled_lines(path):
    """``_lines`` without the blank ones (one record a line)."""
    return ((n, line) for n, line in _lines(path) if line.strip())


# ---------------------------------------------------------------- SMS spam (many-to-one)

def load_sms(path):
    """[(label, message)] from 'label<TAB>message' lines, label in {ham, spam}."""
    records = []
    for n, line in _filled_lines(path):
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
    """The last n letters of ``word_key(word)``: a cheap stand-in for morphology."""
    return word_key(word)[-n:]


# ---------------------------------------------------------------- seq2seq toys

def load_seq2seq(path):
    """[(question, answer)] from 'question_answer' lines; padding spaces are stripped."""
    pairs = []
    for n, line in _filled_lines(path):
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
