"""Sentence ranking for extractive answers, the answer-score bar, and the support check's question test."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic_ai.models.function import FunctionModel

from rag_runtime import AnswerAgent, Hit, check_support
from rag_runtime.answer_selection import candidate_sentences, rank_candidates

CHAIN = Hit(id="c", score=1.0, text="A worn chain stretches and skips on the sprockets. Clean the chain every month.")
FEED = Hit(id="f", score=1.0, text="A sourdough starter is flour and water. Feed the starter once or twice a day.")


def test_bm25_and_overlap_rank_the_sentence_with_the_question_terms_first():
    cands = candidate_sentences([FEED, CHAIN], 700)
    assert [c.ids for c in cands][:2] == [["f"], ["f"]]
    for ranking in ("bm25", "overlap"):
        best = rank_candidates("How often should I feed the starter?", candidate_sentences([FEED, CHAIN], 700),
                               ranking=ranking)[0]
        assert best.sentence == "Feed the starter once or twice a day.", ranking


def test_combined_mixes_cosine_and_overlap_by_the_weight():
    cands = candidate_sentences([FEED], 700)  # "A sourdough starter is ...", "Feed the starter ..."
    q = np.array([1.0, 0.0])
    vectors = np.array([q, [1.0, 0.0], [0.0, 1.0]])  # the first sentence is the nearer by cosine
    by_cosine = rank_candidates("feed starter", cands, ranking="combined", weight=1.0, vectors=vectors)
    assert by_cosine[0].sentence.startswith("A sourdough") and by_cosine[0].score == pytest.approx(1.0)
    by_terms = rank_candidates("feed starter", candidate_sentences([FEED], 700), ranking="combined", weight=0.0,
                               vectors=vectors)
    assert by_terms[0].sentence.startswith("Feed") and by_terms[0].score == pytest.approx(1.0)
    with pytest.raises(ValueError, match="selection weight"):
        rank_candidates("x", cands, weight=1.5)


def test_support_check_fails_a_copied_sentence_that_answers_another_question():
    sentence = "A worn chain stretches and skips on the sprockets."
    assert check_support(sentence, [CHAIN]).supported  # copied: the old check passes it
    check = check_support(sentence, [CHAIN], question="Who invented the bicycle chain?")
    assert not check.supported and check.question_share == pytest.approx(1 / 3, abs=1e-3)
    ok = check_support("Once or twice a day.", [FEED], question="How often do I feed the starter?")
    assert ok.supported and ok.question_share == pytest.approx(2 / 3, abs=1e-3)  # evidence: "feed", "starter"; not "often"


class _Retriever:
    def __init__(self, hits):
        self.hits = hits

    def search(self, query, k=10, filters=None):
        return [h.model_copy(update={"scores": {"bm25": 1.0}}) for h in self.hits]


async def test_top_selection_calls_no_model_and_the_answer_bar_refuses():
    def never(messages, info):
        raise AssertionError("the model was called")

    model = FunctionModel(never)
    agent = AnswerAgent(_Retriever([FEED, CHAIN]), model, style="extractive", selection="top", ranking="overlap")
    answer = await agent.ask("How often should I feed the starter?")
    assert answer.answer == "Feed the starter once or twice a day." and answer.citations == ["f"]
    assert answer.usage is None and answer.support.supported
    barred = AnswerAgent(_Retriever([CHAIN]), model, style="extractive", selection="top", ranking="overlap",
                         min_answer_score=0.5)
    refused = await barred.ask("How often should I feed the starter?")
    assert refused.refused and "no sentence" in refused.reason
    with pytest.raises(ValueError, match="needs style 'extractive'"):
        AnswerAgent(_Retriever([FEED]), model, selection="top")
