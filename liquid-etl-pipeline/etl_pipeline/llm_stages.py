"""The LLM stages as Pydantic AI agents, each with a bounded pydantic output type.

One ``Agent`` per stage, built once per run; every agent gets its model from the shared registry
through ``model_for_role`` (so however many agents name a spec, it is loaded once), or from a
``model_provider`` that tests use to plug in a ``FunctionModel``.

Batching: each stage has its own semaphore of size ``concurrency`` (requests of that stage in
flight, from every chunk and document) and its own output budget (``STAGE_MAX_TOKENS``, sized
from its bounded output type, so a runaway row stops early). The registry's micro-batcher
groups whatever requests are in flight with equal sampling settings into one ``generate`` of up
to the spec's ``max_batch_size``; every stage uses the run's temperature, so all stages can
share a batch.

A call that fails (cut-off JSON, validation error, a backend error) never escapes: the stage
records a per-item error and returns its non-LLM fallback (or nothing, for QA and the judge).
Only a model that cannot load at all (``ModelLoadError``) is fatal for the run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError
from pydantic_ai import Agent
from pydantic_ai.messages import ModelRequest, SystemPromptPart
from pydantic_ai.models import Model

from etl_pipeline.config import EtlConfig
from etl_pipeline.extractive import ExtractiveItem, choose_candidates, roundtrip_item
from etl_pipeline.fallbacks import (
    facts_fallback,
    metadata_fallback,
    summary_fallback,
    taxonomy_fallback,
)
from etl_pipeline.stage_outputs import (
    BoundaryOut,
    FactsOut,
    JudgeOut,
    MetadataOut,
    QAItem,
    QuestionOut,
    SummaryOut,
    TaxonomyOut,
    classification_output_type,
    grounded_metadata_type,
    qa_output_type,
)
from liquid_shared.models import span_model
from liquid_shared.schemas import Chunk

T = TypeVar("T")

STAGE_ROLE = {
    "metadata": "metadata",
    "classify": "metadata",
    "taxonomy": "metadata",
    "facts": "metadata",
    "summary": "summary",
    "qa": "qa",
    "question": "qa",
    "reader": "validation",
    "judge": "validation",
    "boundaries": "chunking",
}
"""Which model of the profile (``liquid_shared.models.profiles``) serves each ETL stage."""

STAGE_MAX_TOKENS = {
    "metadata": 160,
    "classify": 32,
    "taxonomy": 112,
    "facts": 160,
    "summary": 128,
    "qa": 256,
    "question": 48,
    "reader": 32,
    "judge": 32,
    "boundaries": 64,
}
"""Output budget per stage: above the longest JSON its bounded output type allows in practice."""

INSTRUCTIONS = {
    # Short on purpose: on a CPU the prompt's prefill is a large part of each call's cost, and the
    # model layer already appends the output fields (with their descriptions and allowed values).
    # The one-line examples are there because SmolLM2-135M, without them, starts facts and
    # summaries with junk ("Sumer", empty list items) under greedy decoding, and answers QA with
    # paraphrases that fail the grounding check.
    "metadata": "Label the passage for a search index.",
    "classify": "Pick the category that fits the passage best.",
    "taxonomy": "Place the passage in a topic hierarchy, broad to narrow (e.g. Science, Biology, Photosynthesis).",
    "facts": 'State up to three facts from the passage as short sentences. Example: {"facts": "Bees make honey from nectar. A hive has one queen."}',
    "summary": 'Summarise the passage in one sentence. Example: {"summary": "Bees turn nectar into honey and store it in wax cells."}',
    "qa": (
        "Write questions that the passage answers. Each answer is a few words copied from the passage. "
        'Example: {"pairs": [{"question": "What do bees make from nectar?", "answer": "honey", "kind": "factual"}]}'
    ),
    "question": (
        "Write one question about the passage whose answer is the given answer. The question must not contain the answer. "
        'Example: passage "Bees make honey from nectar.", answer "honey" -> {"question": "What do bees make from nectar?"}'
    ),
    "reader": "Answer the question with the shortest span copied word for word from the passage.",
    "judge": "Is the answer to the question stated in the passage?",
    "boundaries": "The sentences of a text are numbered. Give the numbers of the sentences where a new topic starts.",
}


PASSAGE_FIRST_SYSTEM = "Read the passage. A task about it follows."
"""The system text every stage shares in the passage-first layout (the passage follows it in the
same turn, so the whole turn is one prefix for all of a chunk's stages)."""


@dataclass
class StageStats:
    calls: int = 0
    llm: int = 0
    fallback: int = 0
    failed: int = 0
    seconds: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, other: StageStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class DocStats:
    """Per-document accounting, saved with the document's shard (so totals survive resumes)."""

    stages: dict[str, StageStats] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def stage(self, name: str) -> StageStats:
        return self.stages.setdefault(name, StageStats())

    def error(self, stage: str, message: str, chunk_id: str | None = None) -> None:
        self.errors.append({"stage": stage, "chunk_id": chunk_id, "error": message})

    def to_json(self) -> dict[str, Any]:
        return {"stages": {k: vars(v) for k, v in sorted(self.stages.items())}, "errors": self.errors}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DocStats:
        return cls(
            stages={k: StageStats(**v) for k, v in data.get("stages", {}).items()},
            errors=list(data.get("errors", [])),
        )


ModelProvider = Callable[[str], Model]
"""Maps a model role name ('metadata', 'summary', 'qa', 'validation', 'chunking') to a model."""


def registry_models(profile: str) -> ModelProvider:
    """Models from the shared registry for ``profile`` (one load per distinct spec)."""
    from liquid_shared.models import model_for_role

    cache: dict[str, Model] = {}

    def provide(stage: str) -> Model:
        if stage not in cache:
            cache[stage] = model_for_role(stage, profile)
        return cache[stage]

    return provide


def _is_fatal(exc: BaseException) -> bool:
    try:
        from liquid_shared.models.errors import ModelLoadError, OverBudgetError
    except ImportError:  # pragma: no cover - model layer absent
        return False
    return isinstance(exc, ModelLoadError | OverBudgetError)


def _describe(exc: BaseException) -> str:
    """One line: the exception, and what caused it (e.g. the validation error behind a retry limit)."""
    parts = []
    seen = 0
    while exc is not None and seen < 3:
        if isinstance(exc, ValidationError):
            text = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:2])
        else:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        parts.append(f"{type(exc).__name__}: {text}")
        exc = exc.__cause__
        seen += 1
    return " <- ".join(parts)[:400]


def _passage(chunk: Chunk) -> str:
    where = " > ".join([chunk.metadata.get("title", ""), *chunk.section_path]).strip(" >")
    return f"Passage ({where}):\n{chunk.text}" if where else f"Passage:\n{chunk.text}"


class ChunkStages:
    """Runs each LLM stage for one chunk, with fallbacks and accounting."""

    def __init__(
        self,
        config: EtlConfig,
        model_provider: ModelProvider,
        *,
        concurrency: int,
        encode: Callable[[list[str]], Awaitable[np.ndarray]],
        on_call: Callable[[str, int], None] | None = None,
    ):
        self.config = config
        self._semaphores = {stage: asyncio.Semaphore(concurrency) for stage in STAGE_MAX_TOKENS}
        self._encode = encode
        self._on_call = on_call or (lambda stage, tokens: None)
        self._category_vectors: np.ndarray | None = None
        self.model_settings: dict[str, dict[str, Any]] = {}
        for stage, budget in STAGE_MAX_TOKENS.items():
            if stage == "qa":  # two pairs fit 256 tokens; scale with the number asked for
                budget = 48 + 104 * config.qa_per_chunk
            settings: dict[str, Any] = {"max_tokens": budget}
            if config.temperature is not None:
                settings["temperature"] = config.temperature
            self.model_settings[stage] = settings
        output_types: dict[str, type[BaseModel]] = {
            "metadata": MetadataOut,
            "classify": classification_output_type(config.categories),
            "taxonomy": TaxonomyOut,
            "facts": FactsOut,
            "summary": SummaryOut,
            "qa": qa_output_type(config.qa_per_chunk),
            "question": QuestionOut,
            "reader": QuestionOut,  # replaced per request by the chunk's span model (copy constraint)
            "judge": JudgeOut,
            "boundaries": BoundaryOut,
        }
        self.passage_first = config.prompt_layout == "passage-first"
        if self.passage_first:  # the output fields go after the stage's task, not into the shared system turn
            for settings in self.model_settings.values():
                settings["liquid_output_hint"] = "user"
        self.agents: dict[str, Agent[None, Any]] = {}
        for stage, output_type in output_types.items():
            instructions = PASSAGE_FIRST_SYSTEM if self.passage_first and stage != "boundaries" else INSTRUCTIONS[stage]
            self.agents[stage] = Agent(
                model_provider(STAGE_ROLE[stage]),
                output_type=output_type,
                instructions=instructions,
                name=f"etl-{stage}",
                retries={"output": 0},  # greedy decoding would repeat the same answer: fall back at once
            )

    async def _call(self, stage: str, chunk: Chunk | None, task: str, stats: DocStats, chunk_id: str | None,
                    output_type: type[BaseModel] | None = None) -> Any | None:
        """One agent run about ``chunk``'s passage (``None``: ``task`` alone); ``None`` (and a recorded
        error) when it fails for any non-fatal reason. ``task`` is what the stage adds to the passage
        (a question, an answer), empty for most stages. ``output_type`` replaces the stage's for
        this request (the copy-constrained types)."""
        s = stats.stage(stage)
        s.calls += 1
        start = time.perf_counter()
        extra: dict[str, Any] = {"output_type": output_type} if output_type is not None else {}
        if chunk is None:
            prompt = task
        elif self.passage_first:  # system turn: common text + passage; user turn: the stage's task
            extra["message_history"] = [ModelRequest(parts=[SystemPromptPart(content=_passage(chunk))])]
            prompt = f"{task}\n\n{INSTRUCTIONS[stage]}" if task else INSTRUCTIONS[stage]
        else:
            prompt = f"{_passage(chunk)}\n\n{task}" if task else _passage(chunk)
        try:
            async with self._semaphores[stage]:
                result = await self.agents[stage].run(prompt, model_settings=self.model_settings[stage], **extra)
        except Exception as exc:
            if _is_fatal(exc):
                raise
            s.failed += 1
            s.seconds += time.perf_counter() - start
            stats.error(stage, _describe(exc), chunk_id)
            return None
        usage = result.usage
        s.llm += 1
        s.seconds += time.perf_counter() - start
        s.input_tokens += usage.input_tokens or 0
        s.output_tokens += usage.output_tokens or 0
        self._on_call(stage, usage.output_tokens or 0)
        return result.output

    async def _with_fallback(self, stage: str, chunk: Chunk, stats: DocStats, fallback: Callable[[], T],
                             output_type: type[BaseModel] | None = None) -> tuple[T, str]:
        value = None
        if stage in self.config.stages:
            value = await self._call(stage, chunk, "", stats, chunk.chunk_id, output_type)
        if value is None:
            stats.stage(stage).fallback += 1
            return fallback(), "fallback"
        return value, "llm"

    async def metadata(self, chunk: Chunk, stats: DocStats) -> tuple[MetadataOut, str]:
        # keywords and entities are decoded under the copy constraint: they occur in the chunk
        return await self._with_fallback("metadata", chunk, stats, lambda: metadata_fallback(chunk),
                                         grounded_metadata_type(chunk.text))

    async def taxonomy(self, chunk: Chunk, stats: DocStats) -> tuple[TaxonomyOut, str]:
        return await self._with_fallback("taxonomy", chunk, stats, lambda: taxonomy_fallback(chunk))

    async def facts(self, chunk: Chunk, stats: DocStats) -> tuple[FactsOut, str]:
        return await self._with_fallback("facts", chunk, stats, lambda: facts_fallback(chunk))

    async def summary(self, chunk: Chunk, stats: DocStats) -> tuple[SummaryOut, str]:
        return await self._with_fallback("summary", chunk, stats, lambda: summary_fallback(chunk))

    async def classify(self, chunk: Chunk, stats: DocStats) -> tuple[str, str]:
        out = None
        if "classify" in self.config.stages:
            out = await self._call("classify", chunk, "", stats, chunk.chunk_id)
        if out is not None:
            return str(out.category), "llm"
        stats.stage("classify").fallback += 1
        return await self.nearest_category(chunk.text), "fallback"

    async def nearest_category(self, text: str) -> str:
        """The configured category whose name is nearest to ``text`` in embedding space."""
        if self._category_vectors is None:
            self._category_vectors = await self._encode(list(self.config.categories))
        vec = (await self._encode([text]))[0]
        return self.config.categories[int(np.argmax(self._category_vectors @ vec))]

    async def qa(self, chunk: Chunk, stats: DocStats) -> list[QAItem]:
        """Generated QA items (empty, with a recorded error, when generation fails)."""
        if "qa" not in self.config.stages:
            return []
        if self.config.qa_mode == "extractive":
            return await self.extractive_qa(chunk, stats)
        out = await self._call("qa", chunk, "", stats, chunk.chunk_id)
        if out is None:
            return []
        return list(out.pairs)[: self.config.qa_per_chunk]

    async def extractive_qa(self, chunk: Chunk, stats: DocStats) -> list[QAItem]:
        """Answer-first QA with a roundtrip check (``extractive``): every candidate span gets a
        question, and a reader's answer under the copy constraint; the verdict is on the item."""
        candidates = choose_candidates(chunk.text, self.config.qa_per_chunk)

        async def one(candidate) -> ExtractiveItem | None:
            asked = await self._call("question", chunk, f"Answer: {candidate.text}", stats, chunk.chunk_id)
            if asked is None:
                return None
            read = await self._call("reader", chunk, f"Question: {asked.question}", stats,
                                    chunk.chunk_id, span_model(chunk.text))
            return roundtrip_item(asked.question, candidate, read.answer if read is not None else None,
                                  self.config.roundtrip_threshold)

        items = await asyncio.gather(*(one(c) for c in candidates))
        return [item for item in items if item is not None]

    async def judge(self, chunk: Chunk, item: QAItem, stats: DocStats) -> JudgeOut | None:
        if "judge" not in self.config.stages or isinstance(item, ExtractiveItem):
            return None  # an extractive pair is checked by its reader, not by the judge
        return await self._call("judge", chunk, f"Question: {item.question}\nAnswer: {item.answer}", stats, chunk.chunk_id)

    async def boundaries(self, sentences: list[str], stats: DocStats) -> list[int]:
        """1-based sentence numbers where the model proposes a new chunk starts ([] on failure)."""
        numbered = "\n".join(f"{i}. {s}" for i, s in enumerate(sentences, 1))
        out = await self._call("boundaries", None, numbered, stats, None)
        if out is None:
            return []
        return sorted({n for n in out.starts if 1 < n <= len(sentences)})
