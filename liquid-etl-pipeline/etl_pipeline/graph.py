"""The per-document Pydantic Graph.

```
load ──► (Document?) ──► chunk ──► next_window ──(window)──► map over its chunks ──► metadata  ─┐
   │                                  ▲    │                          ├─────► classify  ─┤
   │                                  │    │                          ├─────► taxonomy  ─┤
   │                                  │    │                          ├─────► facts     ─┤
   │                                  │    │                          ├─────► summary   ─┤
   │                                  │    │                          └─────► qa ──► judge ─┤
   │                                  │    │                                          collect (join)
   │                                  └────┼──────────── window_done ◄─────────────────────┘
   │                                       └─(all windows done)──► finalize ──► end
   └─(LoadFailure)──► record_failure ──► end
```

A document's chunks go through the stages in windows of ``chunk_window`` chunks: the next
window is mapped once the previous one has joined, so however long the document (a whole book),
at most ``chunk_window`` chunks have LLM work and graph tasks in flight. Inside a window every
chunk's stages run as parallel branches, every document is its own graph run, and the
runner keeps several documents in flight: the model sees requests from all of them at once,
at most ``concurrency`` per stage (see ``llm_stages``). Steps never raise for bad input or a bad model
output: those become fallbacks or per-item errors in the document's stats. ``finalize`` embeds,
assigns TMD codes, assembles the records and writes the document's shard atomically.

Each LLM step is named after its stage (``config.LLM_STAGES``): the same name is the ``--stages``
value, the key of the report's stage statistics and the ``llm_stages`` method. The model a stage
uses comes from its **model role** in the profile (``llm_stages.STAGE_ROLE``: ``classify``,
``taxonomy`` and ``facts`` share the ``metadata`` role's model, the judge uses ``validation``'s).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic_graph import GraphBuilder, StepContext, reduce_list_append

from etl_pipeline.assemble import ChunkOutputs, DocRecords, assemble_document
from etl_pipeline.chunking import build_chunks, segment_document
from etl_pipeline.config import EtlConfig
from etl_pipeline.llm_stages import ChunkStages, DocStats
from etl_pipeline.loaders import LoadError, SourceItem, load_document
from etl_pipeline.shards import ShardRecord, ShardStore
from etl_pipeline.tmd import TmdAssigner
from etl_pipeline.token_counter import TokenCounter
from liquid_shared.schemas import Chunk, Document


class Events:
    """Progress hooks (no-ops here; the CLI's progress display overrides them)."""

    def chunks_found(self, doc: SourceItem, n: int) -> None: ...

    def chunk_done(self, doc: SourceItem) -> None: ...

    def llm_call(self, stage: str, output_tokens: int) -> None: ...

    def document_done(self, outcome: DocOutcome) -> None: ...


@dataclass
class PipelineDeps:
    """What every document's graph run shares."""

    config: EtlConfig
    stages: ChunkStages
    encode: Callable[[list[str]], Awaitable[np.ndarray]]
    tmd: TmdAssigner
    shards: ShardStore
    counter: TokenCounter
    events: Events = field(default_factory=Events)


@dataclass
class DocState:
    item: SourceItem
    document: Document | None = None
    chunks: list[Chunk] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stats: DocStats = field(default_factory=DocStats)
    started: float = field(default_factory=time.perf_counter)
    pending: dict[str, int] = field(default_factory=dict)
    windowed: int = 0
    """Chunks handed to the stages so far (the next window starts here)."""
    outputs: list[StageOutput] = field(default_factory=list)
    """Stage outputs of the windows done so far."""
    most_in_flight: int = 0
    """Most chunks of this document in the stages at once (at most ``chunk_window``)."""


@dataclass(frozen=True)
class WindowsDone:
    """Every window of the document has been through the stages."""


@dataclass(frozen=True)
class LoadFailure:
    reason: str


@dataclass(frozen=True)
class StageOutput:
    chunk_id: str
    stage: str
    value: Any


@dataclass(frozen=True)
class DocOutcome:
    """What a document's graph run ends with."""

    doc_id: str
    source: str
    status: str
    n_chunks: int = 0
    n_qa: int = 0
    n_valid: int = 0
    error: str | None = None
    most_in_flight: int = 0
    """Most chunks of the document in the stages at once (the window bound)."""


Ctx = StepContext[DocState, PipelineDeps, Any]

_BRANCHES = ("metadata", "classify", "taxonomy", "facts", "summary", "qa")
"""Stages that report per chunk into the join (the judge reports through 'qa')."""


def _chunk_finished(ctx: Ctx, chunk_id: str) -> None:
    left = ctx.state.pending.get(chunk_id, 0) - 1
    ctx.state.pending[chunk_id] = left
    if left == 0:
        ctx.deps.events.chunk_done(ctx.state.item)


def build_document_graph():
    """Build the graph (once per run); ``graph.run(state=DocState(item), deps=deps, inputs=item)``."""
    g = GraphBuilder(name="etl_document", state_type=DocState, deps_type=PipelineDeps, input_type=SourceItem, output_type=DocOutcome)

    @g.step
    async def load(ctx: StepContext[DocState, PipelineDeps, SourceItem]) -> Document | LoadFailure:
        cfg = ctx.deps.config
        try:
            doc = await asyncio.to_thread(
                load_document, ctx.inputs, max_bytes=int(cfg.max_file_mb * 1e6), jsonl_text_field=cfg.jsonl_text_field
            )
        except LoadError as exc:
            return LoadFailure(exc.reason)
        except Exception as exc:  # an unexpected parser crash is still only this document's failure
            return LoadFailure(f"unexpected {type(exc).__name__}: {exc}")
        ctx.state.document = doc
        ctx.state.warnings.extend(doc.metadata.get("warnings", []))
        return doc

    @g.step
    async def chunk(ctx: StepContext[DocState, PipelineDeps, Document]) -> int:
        cfg, doc = ctx.deps.config, ctx.inputs
        seg = await asyncio.to_thread(
            segment_document, doc.text, max_tokens=cfg.max_chunk_tokens, max_chunks=cfg.max_chunks_per_doc, counter=ctx.deps.counter
        )
        breaks: list[int] = []
        if cfg.llm_boundaries:
            breaks = await _propose_breaks(ctx, doc, seg)
        result = build_chunks(
            doc,
            max_tokens=cfg.max_chunk_tokens,
            min_tokens=cfg.min_chunk_tokens,
            max_chunks=cfg.max_chunks_per_doc,
            breaks=breaks,
            segmentation=seg,
            counter=ctx.deps.counter,
        )
        ctx.state.chunks = result.chunks
        ctx.state.warnings.extend(result.warnings)
        ctx.state.pending = {c.chunk_id: len(_BRANCHES) for c in result.chunks}
        ctx.deps.events.chunks_found(ctx.state.item, len(result.chunks))
        return len(result.chunks)

    @g.step
    async def next_window(ctx: StepContext[DocState, PipelineDeps, Any]) -> list[Chunk] | WindowsDone:
        state = ctx.state
        if state.windowed >= len(state.chunks):
            return WindowsDone()
        window = state.chunks[state.windowed : state.windowed + ctx.deps.config.chunk_window]
        state.windowed += len(window)
        state.most_in_flight = max(state.most_in_flight, len(window))
        return window

    @g.step
    async def window_done(ctx: StepContext[DocState, PipelineDeps, list[StageOutput]]) -> int:
        ctx.state.outputs.extend(ctx.inputs)
        return ctx.state.windowed

    @g.step
    async def metadata(ctx: StepContext[DocState, PipelineDeps, Chunk]) -> StageOutput:
        value = await ctx.deps.stages.metadata(ctx.inputs, ctx.state.stats)
        _chunk_finished(ctx, ctx.inputs.chunk_id)
        return StageOutput(ctx.inputs.chunk_id, "metadata", value)

    @g.step
    async def classify(ctx: StepContext[DocState, PipelineDeps, Chunk]) -> StageOutput:
        value = await ctx.deps.stages.classify(ctx.inputs, ctx.state.stats)
        _chunk_finished(ctx, ctx.inputs.chunk_id)
        return StageOutput(ctx.inputs.chunk_id, "classify", value)

    @g.step
    async def taxonomy(ctx: StepContext[DocState, PipelineDeps, Chunk]) -> StageOutput:
        value = await ctx.deps.stages.taxonomy(ctx.inputs, ctx.state.stats)
        _chunk_finished(ctx, ctx.inputs.chunk_id)
        return StageOutput(ctx.inputs.chunk_id, "taxonomy", value)

    @g.step
    async def facts(ctx: StepContext[DocState, PipelineDeps, Chunk]) -> StageOutput:
        value = await ctx.deps.stages.facts(ctx.inputs, ctx.state.stats)
        _chunk_finished(ctx, ctx.inputs.chunk_id)
        return StageOutput(ctx.inputs.chunk_id, "facts", value)

    @g.step
    async def summary(ctx: StepContext[DocState, PipelineDeps, Chunk]) -> StageOutput:
        value = await ctx.deps.stages.summary(ctx.inputs, ctx.state.stats)
        _chunk_finished(ctx, ctx.inputs.chunk_id)
        return StageOutput(ctx.inputs.chunk_id, "summary", value)

    @g.step
    async def qa(ctx: StepContext[DocState, PipelineDeps, Chunk]) -> tuple[Chunk, list]:
        return ctx.inputs, await ctx.deps.stages.qa(ctx.inputs, ctx.state.stats)

    @g.step
    async def judge(ctx: StepContext[DocState, PipelineDeps, tuple[Chunk, list]]) -> StageOutput:
        chunk_, items = ctx.inputs
        verdicts = await asyncio.gather(*(ctx.deps.stages.judge(chunk_, item, ctx.state.stats) for item in items))
        _chunk_finished(ctx, chunk_.chunk_id)
        return StageOutput(chunk_.chunk_id, "qa", list(zip(items, verdicts, strict=True)))

    collect = g.join(reduce_list_append, initial_factory=list, node_id="collect")

    @g.step
    async def finalize(ctx: StepContext[DocState, PipelineDeps, WindowsDone]) -> DocOutcome:
        return await finalize_document(ctx.state, ctx.deps, ctx.state.outputs)

    @g.step
    async def record_failure(ctx: StepContext[DocState, PipelineDeps, LoadFailure]) -> DocOutcome:
        return await write_failure(ctx.state, ctx.deps, ctx.inputs.reason)

    g.add(
        g.edge_from(g.start_node).to(load),
        g.edge_from(load).to(
            g.decision(node_id="loaded?")
            .branch(g.match(Document).to(chunk))
            .branch(g.match(LoadFailure).to(record_failure))
        ),
        g.edge_from(chunk).to(next_window),
        g.edge_from(next_window).to(
            g.decision(node_id="more windows?")
            .branch(g.match(list).map(downstream_join_id="collect").to(metadata, classify, taxonomy, facts, summary, qa))
            .branch(g.match(WindowsDone).to(finalize))
        ),
        g.edge_from(qa).to(judge),
        g.edge_from(metadata, classify, taxonomy, facts, summary, judge).to(collect),
        g.edge_from(collect).to(window_done),
        g.edge_from(window_done).to(next_window),
        g.edge_from(finalize, record_failure).to(g.end_node),
    )
    return g.build()


async def _propose_breaks(ctx: Ctx, doc: Document, seg) -> list[int]:
    """Ask the chunking model where topics change, per section too long for one chunk."""
    breaks: list[int] = []
    index = 0
    budget = ctx.deps.config.max_chunk_tokens
    for section in seg.sections:
        units = section.units
        if section.tokens > budget and len(units) > 2:
            window = units[:60]
            sentences = [" ".join(doc.text[u.start : u.end].split())[:200] for u in window]
            starts = await ctx.deps.stages.boundaries(sentences, ctx.state.stats)
            breaks.extend(index + n - 1 for n in starts)
        index += len(units)
    return breaks


def _group_outputs(outputs: list[StageOutput]) -> dict[str, ChunkOutputs]:
    grouped: dict[str, ChunkOutputs] = {}
    for out in outputs:
        slot = grouped.setdefault(out.chunk_id, ChunkOutputs())
        if out.stage == "classify":
            slot.category = out.value
        else:
            setattr(slot, out.stage, out.value)
    return grouped


async def finalize_document(state: DocState, deps: PipelineDeps, outputs: list[StageOutput]) -> DocOutcome:
    """Embed, assign TMD codes, assemble the records and write the document's shard."""
    doc, cfg = state.document, deps.config
    assert doc is not None
    if not state.chunks:
        return await write_failure(state, deps, "no chunks: the document has no sentence-like text")
    grouped = _group_outputs(outputs)
    questions = [item.question for c in state.chunks for item, _ in grouped.get(c.chunk_id, ChunkOutputs()).qa]
    vectors = await deps.encode([c.text for c in state.chunks] + questions)
    chunk_vecs, question_vecs = vectors[: len(state.chunks)], vectors[len(state.chunks) :]
    records: DocRecords = assemble_document(
        state.chunks,
        grouped,
        chunk_vecs,
        question_vecs,
        deps.tmd.assign(chunk_vecs),
        grounding_threshold=cfg.grounding_threshold,
        judge_threshold=cfg.effective_judge_threshold,
        dedup_threshold=cfg.dedup_threshold,
        validation_profile=cfg.validation_profile,
    )
    n_valid = sum(1 for v in records.validations if v.valid)
    counts = {
        "chunks": len(records.chunks),
        "qa_generated": records.qa_generated,
        "qa_duplicates": records.qa_duplicates,
        "qa_pairs": len(records.qa_pairs),
        "qa_valid": n_valid,
        "ft_samples": len(records.ft_samples),
    }
    shard = ShardRecord(
        doc_id=doc.doc_id,
        source=doc.source,
        content_hash=doc.content_hash,
        status="done",
        fingerprint=cfg.fingerprint(),
        settings=cfg.fingerprint_settings(),
        title=doc.title,
        mime=doc.mime,
        warnings=state.warnings,
        counts=counts,
        stats=state.stats.to_json(),
        seconds=time.perf_counter() - state.started,
    )
    await asyncio.to_thread(
        deps.shards.write,
        shard,
        {
            "chunks": records.chunks,
            "metadata": records.metadata,
            "summaries": records.summaries,
            "qa_pairs": records.qa_pairs,
            "validation": records.validations,
            "ft": records.ft_samples,
        },
        {"embeddings": chunk_vecs},
        {"taxonomy": records.taxonomy},
    )
    return DocOutcome(
        doc.doc_id, doc.source, "done", len(records.chunks), len(records.qa_pairs), n_valid, most_in_flight=state.most_in_flight
    )


async def write_failure(state: DocState, deps: PipelineDeps, reason: str) -> DocOutcome:
    item = state.item
    state.stats.error("load", reason)
    shard = ShardRecord(
        doc_id=item.doc_id,
        source=item.source,
        content_hash=item.raw_hash,
        status="failed",
        fingerprint=deps.config.fingerprint(),
        settings=deps.config.fingerprint_settings(),
        error=reason,
        warnings=state.warnings,
        stats=state.stats.to_json(),
        seconds=time.perf_counter() - state.started,
    )
    await asyncio.to_thread(deps.shards.write, shard)
    return DocOutcome(item.doc_id, item.source, "failed", error=reason)
