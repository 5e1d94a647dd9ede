"""Turn one document's stage outputs into its records (pure functions, no I/O, no model).

Given the chunks, what each stage returned per chunk, and the embeddings of the chunks and of
the generated questions, this builds the ``ChunkMetadata``, ``Summary``, ``QAPair``,
``ValidationResult`` and ``FineTuneSample`` records, assigns TMD codes, removes near-duplicate
QA pairs and builds the document's taxonomy tree. Everything is ordered by chunk position, then
generation order, so the same inputs always give the same records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from etl_pipeline import precision_checks as checks
from etl_pipeline.dedup import near_duplicate_mask
from etl_pipeline.extractive import ExtractiveItem
from etl_pipeline.grounding import grounding_score, well_formed
from etl_pipeline.stage_outputs import (
    FactsOut,
    JudgeOut,
    MetadataOut,
    QAItem,
    SummaryOut,
    TaxonomyOut,
)
from etl_pipeline.tmd import TmdCode
from liquid_shared.schemas import (
    ChatMessage,
    Chunk,
    ChunkMetadata,
    FineTuneSample,
    QAPair,
    Summary,
    ValidationResult,
    content_hash,
)

FT_SYSTEM_PROMPT = "Answer the question from the given context. Be brief."
_IMPORTANCE_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}


@dataclass
class ChunkOutputs:
    """What the stages produced for one chunk (each stage fills its own field)."""

    metadata: tuple[MetadataOut, str] | None = None
    category: tuple[str, str] | None = None
    taxonomy: tuple[TaxonomyOut, str] | None = None
    facts: tuple[FactsOut, str] | None = None
    summary: tuple[SummaryOut, str] | None = None
    qa: list[tuple[QAItem, JudgeOut | None]] = field(default_factory=list)


@dataclass
class DocRecords:
    chunks: list[Chunk]
    metadata: list[ChunkMetadata]
    summaries: list[Summary]
    qa_pairs: list[QAPair]
    validations: list[ValidationResult]
    ft_samples: list[FineTuneSample]
    taxonomy: dict[str, Any]
    qa_generated: int
    qa_duplicates: int


def ft_user_message(chunk: Chunk, question: str) -> str:
    return f"Context:\n{chunk.text}\n\nQuestion: {question}"


def judge_score_of(judge: JudgeOut) -> float:
    """The judge's verdict and 1-5 score as one number in [0, 1] (each counts half)."""
    return ((1.0 if judge.supported else 0.0) + (judge.score - 1) / 4) / 2


def validate_pair(
    item: QAItem, judge: JudgeOut | None, chunk: Chunk, *, grounding_threshold: float, judge_threshold: float
) -> tuple[bool, bool, float | None, float, list[str]]:
    """``(valid, grounded, judge_score, grounding_score, reasons)`` of one QA pair (the ``standard`` profile)."""
    reasons = well_formed(item.question, item.answer)
    g = grounding_score(item.answer, chunk.text)
    grounded = g >= grounding_threshold
    if not grounded:
        reasons.append(f"answer not grounded in the chunk ({g:.2f} < {grounding_threshold:.2f} of its words)")
    if isinstance(item, ExtractiveItem):
        disagreement = item.roundtrip_reason()
        if disagreement:
            reasons.append(disagreement)
        if item.answer.lower() in item.question.lower():
            reasons.append("question gives its answer away")
    judge_score = None
    if judge is not None:
        judge_score = judge_score_of(judge)
        if judge_score < judge_threshold:
            verdict = "supported" if judge.supported else "not supported"
            reasons.append(f"judge: {verdict}, score {judge.score}/5 -> {judge_score:.2f} < {judge_threshold:.2f}")
    valid = not reasons
    return valid, grounded, judge_score, g, reasons


@dataclass(frozen=True)
class DocumentView:
    """What the ``precision`` profile's retrieval check needs of a pair's document."""

    texts: list[str]
    vectors: np.ndarray | None


def precision_reasons(item: QAItem, chunk_index: int, doc: DocumentView,
                      question_vector: np.ndarray | None) -> tuple[list[str], str | None]:
    """``(reasons, answer_span)`` of the ``precision`` profile's own checks (``precision_checks``),
    every check evaluated (none short-circuits), so the report counts each check's rejections."""
    chunk_text = doc.texts[chunk_index]
    reasons = [r for r in (
        checks.retrieval_reason(item.question, chunk_index, doc.texts, question_vector, doc.vectors),
        checks.answer_in_question_reason(item.question, item.answer),
        checks.prompt_copy_reason(item.question, chunk_text),
    ) if r]
    span_reason, span = checks.answer_span_reason(item.answer, chunk_text)
    if span_reason:
        reasons.append(span_reason)
    length = checks.answer_length_reason(span or item.answer)
    if length:
        reasons.append(length)
    if isinstance(item, ExtractiveItem):
        reader = checks.reader_exact_reason(item.reader_answer, item.answer)
        if reader:
            reasons.append(reader)
    return reasons, span


def _taxonomy_tree(paths: list[list[tuple[str, str]]]) -> dict[str, Any]:
    """Merge root-to-leaf paths into a tree with a count per node; a node's importance is the
    highest importance given to it or to anything below it."""
    root: dict[str, Any] = {"name": "", "importance": "low", "count": 0, "children": {}}
    for path in paths:
        node = root
        root["count"] += 1
        for name, importance in path:
            child = node["children"].setdefault(name, {"name": name, "importance": importance, "count": 0, "children": {}})
            child["count"] += 1
            if _IMPORTANCE_RANK[importance] > _IMPORTANCE_RANK[child["importance"]]:
                child["importance"] = importance
            node = child
    _propagate(root)
    return root


def _propagate(node: dict[str, Any]) -> str:
    """Lift each node's importance to the highest found in its subtree."""
    for child in node["children"].values():
        level = _propagate(child)
        if _IMPORTANCE_RANK[level] > _IMPORTANCE_RANK[node["importance"]]:
            node["importance"] = level
    return node["importance"]


def merge_taxonomies(trees: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge document taxonomy trees (same rule as within one document)."""
    root: dict[str, Any] = {"name": "", "importance": "low", "count": 0, "children": {}}

    def merge_into(dst: dict[str, Any], src: dict[str, Any]) -> None:
        dst["count"] += src["count"]
        if _IMPORTANCE_RANK[src["importance"]] > _IMPORTANCE_RANK[dst["importance"]]:
            dst["importance"] = src["importance"]
        for name, child in src["children"].items():
            target = dst["children"].setdefault(name, {"name": name, "importance": "low", "count": 0, "children": {}})
            merge_into(target, child)

    for tree in trees:
        merge_into(root, tree)
    return root


def assemble_document(
    chunks: list[Chunk],
    outputs: dict[str, ChunkOutputs],
    chunk_vectors: np.ndarray,
    question_vectors: np.ndarray,
    tmd_codes: list[TmdCode],
    *,
    grounding_threshold: float,
    judge_threshold: float,
    dedup_threshold: float,
    validation_profile: str = "standard",
) -> DocRecords:
    """Build every record of one document. ``question_vectors`` follow the QA order of ``outputs``.

    ``validation_profile``: ``standard`` (well formed, grounded, the judge where it gates, the
    extractive roundtrip) or ``precision`` (those plus ``precision_checks``; a valid pair's
    fine-tuning answer is then its span of the chunk)."""
    metadata: list[ChunkMetadata] = []
    summaries: list[Summary] = []
    final_chunks: list[Chunk] = []
    paths: list[list[tuple[str, str]]] = []
    qa_rows: list[tuple[Chunk, QAItem, JudgeOut | None]] = []
    row_chunk_index: list[int] = []
    for chunk_index, (chunk, tmd) in enumerate(zip(chunks, tmd_codes, strict=True)):
        out = outputs.get(chunk.chunk_id, ChunkOutputs())
        meta, meta_source = out.metadata or (MetadataOut(tags=[], keywords=[], entities=[], importance="medium"), "fallback")
        category = out.category[0] if out.category else None
        taxonomy = out.taxonomy[0].path if out.taxonomy else []
        paths.append([(n.name, n.importance) for n in taxonomy])
        metadata.append(
            ChunkMetadata(
                chunk_id=chunk.chunk_id,
                tags=list(meta.tags),
                keywords=list(meta.keywords),
                entities=list(meta.entities),
                importance=meta.importance,
                section=" > ".join(chunk.section_path),
                category=category,
                taxonomy=[n.name for n in taxonomy],
                facts=out.facts[0].sentences() if out.facts else [],
                tmd=tmd.code,
                source=meta_source,  # type: ignore[arg-type]
            )
        )
        summary, summary_source = out.summary or (SummaryOut(summary=chunk.text[:220].ljust(10, ".")), "fallback")
        where = " > ".join([chunk.metadata.get("title", ""), *chunk.section_path]).strip(" >")
        keywords = ", ".join(meta.keywords)
        summaries.append(
            Summary(
                chunk_id=chunk.chunk_id,
                summary=summary.summary,
                embedding_text=f"{where}: {summary.summary}" + (f" Keywords: {keywords}." if keywords else ""),
                source=summary_source,  # type: ignore[arg-type]
            )
        )
        final_chunks.append(chunk.model_copy(update={"metadata": {**chunk.metadata, "tmd": tmd.code, "category": category}}))
        qa_rows.extend((chunk, item, judge) for item, judge in out.qa)
        row_chunk_index.extend(chunk_index for _ in out.qa)

    keep = near_duplicate_mask([item.question for _, item, _ in qa_rows], question_vectors, dedup_threshold)
    qa_pairs: list[QAPair] = []
    validations: list[ValidationResult] = []
    samples: list[FineTuneSample] = []
    seen_ids: set[str] = set()
    duplicates = 0
    doc_view = DocumentView([c.text for c in chunks], np.asarray(chunk_vectors) if len(chunk_vectors) else None)
    for row, ((chunk, item, judge), kept) in enumerate(zip(qa_rows, keep, strict=True)):
        qa_id = QAPair.make_id(chunk.chunk_id, item.question, item.answer)
        if not kept or qa_id in seen_ids:
            duplicates += 1
            continue
        seen_ids.add(qa_id)
        pair = QAPair(
            qa_id=qa_id,
            chunk_id=chunk.chunk_id,
            doc_id=chunk.doc_id,
            question=item.question,
            answer=item.answer,
            question_type=item.kind,  # type: ignore[arg-type]
        )
        valid, grounded, judge_score, g, reasons = validate_pair(
            item, judge, chunk, grounding_threshold=grounding_threshold, judge_threshold=judge_threshold
        )
        span = None
        if validation_profile == "precision":
            q_vec = question_vectors[row] if row < len(question_vectors) else None
            extra, span = precision_reasons(item, row_chunk_index[row], doc_view, q_vec)
            reasons = reasons + extra
            valid = not reasons
        qa_pairs.append(pair)
        validations.append(
            ValidationResult(
                qa_id=qa_id, valid=valid, grounded=grounded, judge_score=judge_score, grounding_score=g, reasons=reasons,
                answer_span=span if span is not None and span != item.answer else None,
            )
        )
        if valid:
            samples.append(
                FineTuneSample(
                    sample_id=content_hash(qa_id, "chat-v1"),
                    qa_id=qa_id,
                    chunk_id=chunk.chunk_id,
                    messages=[
                        ChatMessage(role="system", content=FT_SYSTEM_PROMPT),
                        ChatMessage(role="user", content=ft_user_message(chunk, item.question)),
                        ChatMessage(role="assistant", content=span or item.answer),
                    ],
                )
            )
    return DocRecords(
        chunks=final_chunks,
        metadata=metadata,
        summaries=summaries,
        qa_pairs=qa_pairs,
        validations=validations,
        ft_samples=samples,
        taxonomy=_taxonomy_tree(paths),
        qa_generated=len(qa_rows),
        qa_duplicates=duplicates,
    )
