"""rag_answers' metrics against the definitions of SQuAD v2.0's official evaluation script
(``evaluate-v2.0.py``), on cases worked out by hand."""

from __future__ import annotations

import math

import pytest

from experiments.answer_data import answer_set, split_by_paragraph, subsample
from experiments.answer_metrics import (
    answer_correct,
    contains_span,
    precision_recall_f1,
    squad_exact,
    squad_f1,
    squad_v2_summary,
)


@pytest.mark.parametrize(("prediction", "golds", "exact", "f1"), [
    ("The Moon's gravity!", ["the Moons gravity"], 1.0, 1.0),           # case, punctuation, articles normalised
    ("Norman conquest of England", ["the Norman conquest"], 0.0, 2 * 0.5 * 1.0 / 1.5),  # P 2/4, R 2/2
    ("Rollo", ["Rollo of Normandy", "Rollo"], 1.0, 1.0),                # max over the golds
    ("", [], 1.0, 1.0),                                                  # refusing an unanswerable question
    ("France", [], 0.0, 0.0),                                            # answering an unanswerable one
    ("", ["France"], 0.0, 0.0),                                          # refusing an answerable one
    ("the", ["a"], 1.0, 1.0),                                            # both normalise to nothing
    ("Paris", ["the", ""], 0.0, 0.0),                                    # golds that normalise to nothing = no answer
    ("in 911 in 911", ["911"], 0.0, 2 * (1 / 4) * 1.0 / (1 / 4 + 1.0)),  # repeated tokens count once per gold token
])
def test_exact_and_f1_follow_the_official_v2_definitions(prediction, golds, exact, f1):
    assert squad_exact(prediction, golds) == exact
    assert squad_f1(prediction, golds) == pytest.approx(f1)


def test_has_ans_and_no_ans_are_the_means_over_each_kind():
    summary = squad_v2_summary([1.0, 0.0, 1.0], [1.0, 0.5, 1.0], [True, True, False])
    assert summary["exact"] == pytest.approx(2 / 3) and summary["f1"] == pytest.approx(2.5 / 3)
    assert summary["HasAns_exact"] == 0.5 and summary["HasAns_f1"] == 0.75
    assert summary["NoAns_exact"] == 1.0 and summary["NoAns_f1"] == 1.0
    assert math.isnan(squad_v2_summary([1.0], [1.0], [True])["NoAns_f1"])


def test_answer_accuracy_sentence_needs_a_whole_span_generative_needs_f1_half():
    sentence = "The Normans were descended from Norse raiders led by Rollo, who settled in 911."
    assert contains_span(sentence, ["Norse raiders"]) and contains_span(sentence, ["in 911"])
    assert not contains_span(sentence, ["Roll"])  # whole tokens only
    assert answer_correct(sentence, ["led by Rollo"], sentence=True)
    assert not answer_correct(sentence, ["led by Rollo"], sentence=False)  # as a generative answer, F1 < 0.5
    assert answer_correct("Rollo", ["Rollo the Viking"], sentence=False)  # P 1, R 1/2: F1 2/3
    assert not answer_correct("Rollo", ["Rollo, a Viking from Norway"], sentence=False)  # P 1, R 1/4: F1 0.4
    assert not answer_correct("Rollo", ["Rollo"], sentence=False, refused=True)
    assert not answer_correct("Rollo", [], sentence=True)  # an unanswerable question has no right answer


def test_precision_recall_f1_of_refusals():
    refused = [True, True, False, False, True]
    unanswerable = [True, False, True, False, True]
    out = precision_recall_f1(refused, unanswerable)
    assert (out["tp"], out["fp"], out["fn"]) == (2.0, 1.0, 1.0)
    assert out["precision"] == pytest.approx(2 / 3) and out["recall"] == pytest.approx(2 / 3)
    assert out["f1"] == pytest.approx(2 / 3)
    assert precision_recall_f1([False, False], [True, False])["f1"] == 0.0


SQUAD = {"data": [
    {"title": "T", "paragraphs": [
        {"context": f"Paragraph {i} text. It has a second sentence.", "qas": [
            {"id": f"q{i}a", "question": f"What is in paragraph {i}?", "is_impossible": False,
             "answers": [{"text": "text", "answer_start": 12}]},
            {"id": f"q{i}b", "question": f"Who wrote paragraph {i}?", "is_impossible": True, "answers": []}]}
        for i in range(10)]}]}


def test_split_is_by_paragraph_seeded_and_disjoint():
    data = answer_set(SQUAD, "t")
    dev, report = split_by_paragraph(data, seed=3)
    assert not set(dev.paragraphs) & set(report.paragraphs)
    assert set(dev.paragraphs) | set(report.paragraphs) == set(data.paragraphs)
    assert all(q.paragraph in dev.paragraphs for q in dev.questions.values())
    assert all(q.paragraph in report.paragraphs for q in report.questions.values())
    assert len(dev.questions) + len(report.questions) == len(data.questions) == 20
    assert split_by_paragraph(data, seed=3)[0].paragraphs == dev.paragraphs
    assert split_by_paragraph(data, seed=4)[0].paragraphs != dev.paragraphs
    sample = subsample(data.questions, 6, seed=0)
    assert len(sample) == 6 and sum(q.answerable for q in sample.values()) == 3


def test_bad_squad_input_is_named():
    with pytest.raises(ValueError, match="answerable but has no answers"):
        answer_set({"data": [{"title": "T", "paragraphs": [{"context": "x", "qas": [
            {"id": "a", "question": "q?", "is_impossible": False, "answers": []}]}]}]}, "bad.json")
