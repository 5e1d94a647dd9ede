"""Chunking: sentences are never cut, the budget holds, structure and positions are kept."""

from __future__ import annotations

import pytest

from etl_pipeline.chunking import boundary_report, build_chunks, segment_document
from etl_pipeline.sentences import sentence_spans
from etl_pipeline.token_counter import default_token_counter
from liquid_shared.schemas import Chunk, Document

TOPICS = ["river", "forest", "engine", "market", "garden", "castle", "harbour", "library"]


def _doc(text: str, source: str = "t.md") -> Document:
    return Document.from_text(text, source=source, title="T")


def _long_markdown() -> str:
    parts = ["# Guide", "", "Intro sentence one. Intro sentence two, e.g. with an abbreviation.", ""]
    for i, topic in enumerate(TOPICS):
        parts += [f"## {topic.title()}", ""]
        for p in range(3):
            parts.append(" ".join(f"The {topic} in paragraph {p} has property {k} which matters for reason {k + i}." for k in range(4)))
            parts.append("")
    return "\n".join(parts)


def test_chunks_end_on_sentence_boundaries_and_stay_under_budget():
    doc = _doc(_long_markdown())
    result = build_chunks(doc, max_tokens=80, min_tokens=10, max_chunks=100)
    sentence_ends = {doc.text[s:e].rstrip() and e for s, e in sentence_spans(doc.text)}
    assert len(result.chunks) > len(TOPICS)
    for chunk in result.chunks:
        assert chunk.n_tokens <= 80
        assert chunk.end_char in sentence_ends, f"chunk {chunk.position} ends mid-sentence: {chunk.text[-40:]!r}"
        assert doc.text[chunk.start_char : chunk.end_char] == chunk.text
        assert not chunk.metadata["hard_split"]
    report = boundary_report(result.chunks, max_tokens=80)
    assert report["sentence_complete_share"] == 1.0
    assert report["terminal_punctuation_share"] == 1.0
    assert report["over_budget"] == 0


def test_positions_ids_and_section_paths():
    doc = _doc(_long_markdown())
    chunks = build_chunks(doc, max_tokens=80, min_tokens=10, max_chunks=100).chunks
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert len({c.chunk_id for c in chunks}) == len(chunks)
    assert all(c.chunk_id == Chunk.make_id(doc.doc_id, c.position, c.text) for c in chunks)
    assert chunks[0].section_path == ["Guide"]
    forest = [c for c in chunks if c.section_path == ["Guide", "Forest"]]
    assert forest and all("forest" in c.text for c in forest)
    assert all("castle" not in c.text for c in forest), "a chunk crossed a section boundary"
    # chunks appear in document order without overlap
    assert all(a.end_char <= b.start_char for a, b in zip(chunks, chunks[1:], strict=False))


def test_same_input_gives_same_chunks():
    doc = _doc(_long_markdown())
    a = build_chunks(doc, max_tokens=60, min_tokens=10, max_chunks=100).chunks
    b = build_chunks(doc, max_tokens=60, min_tokens=10, max_chunks=100).chunks
    assert [c.chunk_id for c in a] == [c.chunk_id for c in b]


def test_a_section_is_balanced_rather_than_leaving_a_scrap():
    text = " ".join(f"Sentence number {i} is about the same length as the rest." for i in range(12))
    counter = default_token_counter()
    per_sentence = counter.count("Sentence number 10 is about the same length as the rest.")
    budget = per_sentence * 7  # 12 sentences: greedy packing would give 7 + 5, balanced 6 + 6
    chunks = build_chunks(_doc(text, "b.txt"), max_tokens=budget, min_tokens=0, max_chunks=10).chunks
    assert len(chunks) == 2
    assert abs(chunks[0].n_tokens - chunks[1].n_tokens) <= per_sentence


def test_tiny_sections_merge_with_a_neighbour_under_their_common_path():
    text = "# Book\n\n## A\n\nShort.\n\n## B\n\nAlso short here.\n"
    chunks = build_chunks(_doc(text), max_tokens=100, min_tokens=20, max_chunks=10).chunks
    assert len(chunks) == 1
    assert chunks[0].section_path == ["Book"]
    assert "Short." in chunks[0].text and "Also short here." in chunks[0].text


def test_code_fences_and_list_items_stay_whole():
    text = "# T\n\nIntro text here.\n\n```\nx = 1. y = 2.\nprint(x)\n```\n\n- first item. Still first\n- second item\n"
    seg = segment_document(text, max_tokens=100, max_chunks=10)
    units = [text[u.start : u.end] for u in seg.units]
    assert "```\nx = 1. y = 2.\nprint(x)\n```" in units
    assert "- first item. Still first" in units


def test_an_oversized_sentence_is_hard_split_and_reported():
    text = "Intro. " + " ".join(["word"] * 400) + " end."
    result = build_chunks(_doc(text, "w.txt"), max_tokens=50, min_tokens=5, max_chunks=100)
    assert all(c.n_tokens <= 50 for c in result.chunks)
    assert any(c.metadata["hard_split"] for c in result.chunks)
    report = boundary_report(result.chunks, max_tokens=50)
    assert report["hard_split_chunks"] > 0
    assert report["sentence_complete_share"] < 1.0


def test_huge_document_is_truncated_to_max_chunks_with_a_warning():
    text = "\n\n".join(f"Paragraph {i} says something short. It has two sentences." for i in range(20000))
    result = build_chunks(_doc(text, "huge.txt"), max_tokens=64, min_tokens=8, max_chunks=5)
    assert len(result.chunks) == 5
    assert result.truncated
    assert any("truncated" in w for w in result.warnings)


def test_break_hints_start_new_chunks():
    text = " ".join(f"Sentence {i} talks about one thing only." for i in range(8))
    doc = _doc(text, "h.txt")
    plain = build_chunks(doc, max_tokens=500, min_tokens=1, max_chunks=10).chunks
    hinted = build_chunks(doc, max_tokens=500, min_tokens=1, max_chunks=10, breaks=[4]).chunks
    assert len(plain) == 1
    assert len(hinted) == 2
    assert hinted[1].text.startswith("Sentence 4 ")


@pytest.mark.parametrize("text", ["", "   \n\n "])
def test_empty_text_gives_no_chunks(text: str):
    assert build_chunks(_doc(text, "e.txt"), max_tokens=50, min_tokens=5, max_chunks=5).chunks == []
