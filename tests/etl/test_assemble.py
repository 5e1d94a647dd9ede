"""Record assembly: validation (judge + grounding), near-duplicate removal, fine-tuning samples."""

from __future__ import annotations

import numpy as np
import pytest

from etl_pipeline.assemble import ChunkOutputs, assemble_document, merge_taxonomies, validate_pair
from etl_pipeline.grounding import grounding_score
from etl_pipeline.stage_outputs import (
    JudgeOut,
    MetadataOut,
    QAItem,
    SummaryOut,
    TaxonNode,
    TaxonomyOut,
)
from etl_pipeline.tmd import TmdCode
from liquid_shared.embeddings import get_embedder
from liquid_shared.schemas import Chunk

TEXT = "The Moon raises two bulges of water on Earth. Most coasts therefore see two high tides each day."


def _chunk(position: int = 0, text: str = TEXT) -> Chunk:
    return Chunk(chunk_id=Chunk.make_id("d1", position, text), doc_id="d1", text=text, position=position, metadata={"title": "Tides"})


def test_grounding_score_counts_answer_words_found_in_the_chunk():
    assert grounding_score("two high tides", TEXT) == 1.0
    assert grounding_score("two bulges of water", TEXT) == 1.0
    assert grounding_score("the Sun's heat", TEXT) == 0.0
    assert 0 < grounding_score("two volcanic tides", TEXT) < 1
    assert grounding_score("Yes", "yes, it does") == 1.0


def test_validation_needs_grounding_form_and_the_judge():
    chunk = _chunk()
    good = QAItem(question="How many high tides do most coasts see?", answer="two high tides each day", kind="factual")
    ok = validate_pair(good, JudgeOut(supported=True, score=5), chunk, grounding_threshold=0.6, judge_threshold=0.5)
    assert ok[0] and ok[1] and ok[2] == 1.0 and ok[4] == []
    rejected = validate_pair(good, JudgeOut(supported=False, score=1), chunk, grounding_threshold=0.6, judge_threshold=0.5)
    assert not rejected[0] and rejected[4][0].startswith("judge: not supported") and rejected[2] == 0.0
    low = validate_pair(good, JudgeOut(supported=False, score=3), chunk, grounding_threshold=0.6, judge_threshold=0.5)
    assert not low[0] and low[2] == 0.25
    advisory = validate_pair(good, JudgeOut(supported=False, score=1), chunk, grounding_threshold=0.6, judge_threshold=0.0)
    assert advisory[0] and advisory[2] == 0.0  # the verdict is recorded but does not gate
    ungrounded = QAItem(question="What heats the sea?", answer="volcanic vents", kind="causal")
    bad = validate_pair(ungrounded, JudgeOut(supported=True, score=5), chunk, grounding_threshold=0.6, judge_threshold=0.5)
    assert not bad[0] and not bad[1]
    no_judge = validate_pair(good, None, chunk, grounding_threshold=0.6, judge_threshold=0.5)
    assert no_judge[0] and no_judge[2] is None
    not_a_question = QAItem(question="Tides are caused by", answer="two bulges of water", kind="factual")
    assert not validate_pair(not_a_question, None, chunk, grounding_threshold=0.6, judge_threshold=0.5)[0]


def _assemble(qa: list[tuple[QAItem, JudgeOut | None]]):
    chunks = [_chunk(0), _chunk(1, "Sailors call the smaller tides neap tides. They happen at quarter moon.")]
    outputs = {
        chunks[0].chunk_id: ChunkOutputs(
            metadata=(MetadataOut(tags=["tides"], keywords=["moon", "tide"], entities=["Moon"], importance="high"), "llm"),
            category=("science", "llm"),
            taxonomy=(TaxonomyOut(path=[TaxonNode(name="Science", importance="low"), TaxonNode(name="Tides", importance="high")]), "llm"),
            summary=(SummaryOut(summary="The Moon causes two tides a day."), "llm"),
            qa=qa,
        )
    }
    emb = get_embedder()
    chunk_vecs = emb.encode([c.text for c in chunks])
    q_vecs = emb.encode([item.question for item, _ in qa]) if qa else np.zeros((0, chunk_vecs.shape[1]), np.float32)
    codes = [TmdCode("science", "explanation", "introductory")] * 2
    return chunks, assemble_document(chunks, outputs, chunk_vecs, q_vecs, codes, grounding_threshold=0.6, judge_threshold=0.5, dedup_threshold=0.9)


@pytest.mark.slow
def test_assembly_dedups_and_keeps_only_valid_pairs_for_fine_tuning():
    yes = JudgeOut(supported=True, score=5)
    qa = [
        (QAItem(question="How many high tides do most coasts see each day?", answer="two high tides", kind="factual"), yes),
        (QAItem(question="How many high tides do most coasts see every day?", answer="two", kind="factual"), yes),
        (QAItem(question="What does the Moon raise on Earth?", answer="two bulges of water", kind="causal"), yes),
        (QAItem(question="Who discovered tides?", answer="Isaac Newton", kind="factual"), yes),
    ]
    chunks, rec = _assemble(qa)
    assert rec.qa_generated == 4 and rec.qa_duplicates == 1
    assert [p.question for p in rec.qa_pairs] == [qa[0][0].question, qa[2][0].question, qa[3][0].question]
    assert [v.valid for v in rec.validations] == [True, True, False]
    assert {s.qa_id for s in rec.ft_samples} == {p.qa_id for p, v in zip(rec.qa_pairs, rec.validations, strict=True) if v.valid}
    sample = rec.ft_samples[0].to_chat_json()
    assert [m["role"] for m in sample["messages"]] == ["system", "user", "assistant"]
    assert chunks[0].text in sample["messages"][1]["content"]
    assert sample["messages"][2]["content"] == "two high tides"


def test_assembly_fills_every_chunk_even_without_stage_outputs():
    chunks, rec = _assemble([])
    assert [m.chunk_id for m in rec.metadata] == [c.chunk_id for c in chunks]
    assert rec.metadata[0].source == "llm" and rec.metadata[1].source == "fallback"
    assert rec.metadata[0].taxonomy == ["Science", "Tides"]
    assert rec.summaries[1].source == "fallback"
    assert all(c.metadata["tmd"] == "science.explanation.introductory" for c in rec.chunks)
    assert "Keywords: moon, tide." in rec.summaries[0].embedding_text
    assert rec.taxonomy["children"]["Science"]["importance"] == "high"  # the highest importance seen below


def test_taxonomy_trees_merge_counts_and_importance():
    a = {"name": "", "importance": "low", "count": 1, "children": {"X": {"name": "X", "importance": "low", "count": 1, "children": {}}}}
    b = {"name": "", "importance": "low", "count": 2, "children": {"X": {"name": "X", "importance": "critical", "count": 2, "children": {}}}}
    merged = merge_taxonomies([a, b])
    assert merged["count"] == 3
    assert merged["children"]["X"] == {"name": "X", "importance": "critical", "count": 3, "children": {}}
