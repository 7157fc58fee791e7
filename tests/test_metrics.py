"""Metrics of the sequence tasks: accuracy, precision/recall/F1, CoNLL entity F1 for IOB1."""
import pytest
from hypothesis import given, settings, strategies as st

from jax_rnnlm.seqtasks import metrics


def test_precision_recall_f1_of_the_positive_class():
    p, r, f1 = metrics.precision_recall_f1([1, 1, 0, 0, 1], [1, 0, 0, 1, 1], positive=1)
    assert (p, r) == (2 / 3, 2 / 3) and f1 == pytest.approx(2 / 3)
    assert metrics.accuracy([1, 1, 0, 0, 1], [1, 0, 0, 1, 1]) == 0.6


@pytest.mark.parametrize("tags,spans", [
    (["I-PER", "I-PER", "O"], {(0, 2, "PER")}),
    (["I-PER", "B-PER"], {(0, 1, "PER"), (1, 2, "PER")}),          # B- splits two entities
    (["I-PER", "I-LOC"], {(0, 1, "PER"), (1, 2, "LOC")}),          # a type change ends a chunk
    (["O", "I-ORG", "I-ORG", "O", "I-MISC"], {(1, 3, "ORG"), (4, 5, "MISC")}),
    (["B-LOC", "I-LOC"], {(0, 2, "LOC")}),                         # IOB2 reads the same
])
def test_iob1_spans_follow_conlleval(tags, spans):
    assert metrics.iob1_spans(tags) == spans


def test_conll_f1_counts_exact_span_and_type_matches_only():
    gold = [["I-PER", "I-PER", "O", "I-LOC"], ["I-ORG"]]
    pred = [["I-PER", "O", "O", "I-LOC"], ["I-MISC"]]   # one boundary error, one type error
    p, r, f1 = metrics.conll_f1(gold, pred)
    assert (p, r, f1) == pytest.approx((100 / 3, 100 / 3, 100 / 3))
    assert metrics.conll_f1(gold, gold) == (100.0, 100.0, 100.0)


@settings(max_examples=30)
@given(st.lists(st.sampled_from(["O", "I-PER", "B-PER", "I-LOC"]), max_size=12))
def test_every_non_o_token_lies_in_exactly_one_span(tags):
    covered = sorted(i for s, e, _ in metrics.iob1_spans(tags) for i in range(s, e))
    assert covered == [i for i, t in enumerate(tags) if t != "O"]
