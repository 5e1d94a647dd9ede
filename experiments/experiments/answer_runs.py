"""The answer variants of ``rag_answers`` and how each is run over the questions, resumably.

A variant is an ``AnswerAgent`` configuration (``AnswerVariant``): an answer style and mode, how
sentences are ranked and whether a model chooses among them (``selection``), whether the
answer-score refusal bar applies, and whether retrieval is real or the oracle (the question's own
paragraph handed over as the only chunk, with its real dense score, so the reader is bounded).
The no-LLM baselines are variants too: ``style = "extractive"``, ``selection = "top"``.

Every finished question is appended to ``cache/<variant>.jsonl`` at once, under a key of the
variant, the fitted settings and the data; a killed run started again with the same output folder
answers only the questions that are not there yet. LLM variants run ``concurrency`` questions at a
time, so the in-process model's micro-batcher decodes them together.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from experiments.answer_data import Question


class AnswerVariant(BaseModel):
    """One way of answering."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$", description="Name in the tables.")
    style: Literal["generative", "extractive"] = Field("generative", description="AnswerAgent style.")
    mode: Literal["context", "tool"] = Field("context", description="AnswerAgent mode (tool: generative only).")
    selection: Literal["model", "top"] = Field("model", description="Extractive: the model chooses among the "
                                               "ranked sentences, or the top one is the answer (no LLM).")
    ranking: Literal["embedding", "bm25", "combined", "overlap"] = Field(
        "combined", description="Sentence ranking (answer_selection); overlap = the ranking before this experiment.")
    answer_bar: bool = Field(True, description="Refuse when no sentence reaches the fitted min_answer_score.")
    check_question: bool = Field(True, description="The support check also asks that the answer is about the question.")
    oracle: bool = Field(False, description="Hand over the question's own paragraph instead of retrieving.")

    @property
    def uses_llm(self) -> bool:
        return not (self.style == "extractive" and self.selection == "top")


DEFAULT_ANSWER_VARIANTS = [
    AnswerVariant(name="sentence_embedding", style="extractive", selection="top", ranking="embedding", answer_bar=False),
    AnswerVariant(name="sentence_bm25", style="extractive", selection="top", ranking="bm25", answer_bar=False),
    AnswerVariant(name="sentence_combined", style="extractive", selection="top", ranking="combined", answer_bar=False),
    AnswerVariant(name="sentence_ranked", style="extractive", selection="top", ranking="combined"),
    AnswerVariant(name="extractive", style="extractive", ranking="combined"),
    AnswerVariant(name="extractive_before", style="extractive", ranking="overlap", answer_bar=False,
                  check_question=False),
    AnswerVariant(name="generative_context", style="generative", mode="context"),
    AnswerVariant(name="generative_before", style="generative", mode="context", answer_bar=False,
                  check_question=False),
    AnswerVariant(name="generative_tool", style="generative", mode="tool"),
    AnswerVariant(name="oracle_sentence_ranked", style="extractive", selection="top", oracle=True),
    AnswerVariant(name="oracle_extractive", style="extractive", oracle=True),
    AnswerVariant(name="oracle_generative_context", style="generative", mode="context", oracle=True),
]


class OracleRetriever:
    """Returns the question's own paragraph as the only hit, with the dense and BM25 scores the real
    retrievers give it (so the refusal bars act as they would)."""

    def __init__(self, index: Any, paragraph_of: dict[str, str]):
        self.index, self.paragraph_of = index, paragraph_of
        self.dense = index.dense

    def search(self, query: str, k: int = 10, filters: Any = None) -> list[Any]:
        pid = self.paragraph_of.get(query.strip())
        if pid is None:
            raise KeyError(f"oracle retrieval: {query[:80]!r} is not one of the experiment's questions")
        n = len(self.index.store)
        dense = {h.id: h.score for h in self.index.dense.search(query, n)}
        bm25 = {h.id: h.score for h in self.index.bm25.search(query, n)}
        hit = self.index.store.hit(self.index.store.row_of[pid], dense.get(pid, 0.0),
                                   {"dense": dense.get(pid, 0.0), "bm25": bm25.get(pid, 0.0)})
        return [hit]

    def search_many(self, queries: list[str], k: int = 10, filters: Any = None) -> list[list[Any]]:
        return [self.search(q, k, filters) for q in queries]


def cache_key(variant: AnswerVariant, settings: dict[str, Any], data_key: str, agent_kwargs: dict[str, Any]) -> str:
    blob = json.dumps({"variant": variant.model_dump(), "settings": settings, "data": data_key,
                       "agent": agent_kwargs}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class AnswerCache:
    """``cache/<variant>.jsonl``: one record per answered question, under the run's key."""

    def __init__(self, folder: Path, variant: str, key: str):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{variant}.jsonl"
        self.key = key
        self.records: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill
                    continue
                if rec.get("key") == key:
                    self.records[rec["question_id"]] = rec
        self._file = self.path.open("a", encoding="utf-8")

    def add(self, record: dict[str, Any]) -> None:
        record = {**record, "key": self.key}
        self.records[record["question_id"]] = record
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _record(q: Question, answer: Any, seconds: float, error: str | None = None) -> dict[str, Any]:
    if answer is None:
        return {"question_id": q.id, "answer": "", "refused": False, "citations": [], "context": [], "support": None,
                "question_share": None, "seconds": seconds, "requests": 0, "input_tokens": 0, "output_tokens": 0,
                "reason": None, "error": error}
    usage = answer.usage
    return {"question_id": q.id, "answer": answer.answer, "refused": answer.refused, "citations": answer.citations,
            "context": [h.id for h in answer.context],
            "support": None if answer.support is None else answer.support.supported,
            "question_share": None if answer.support is None else answer.support.question_share,
            "seconds": seconds, "requests": usage.requests if usage else 0,
            "input_tokens": usage.input_tokens if usage else 0, "output_tokens": usage.output_tokens if usage else 0,
            "reason": answer.reason, "error": error}


async def _answer_all(agent: Any, questions: list[Question], cache: AnswerCache, concurrency: int,
                      on_done: Callable[[], None]) -> None:
    from rag_runtime import AnswerError

    gate = asyncio.Semaphore(concurrency)

    async def one(q: Question) -> None:
        async with gate:
            t0 = time.perf_counter()
            try:
                answer, error = await agent.ask(q.text), None
            except AnswerError as exc:
                answer, error = None, str(exc)[:300]
            cache.add(_record(q, answer, time.perf_counter() - t0, error))
            on_done()

    await asyncio.gather(*(one(q) for q in questions))


def run_variant(variant: AnswerVariant, questions: dict[str, Question], *, index: Any, encoder: Any, model: Any,
                settings: dict[str, Any], k: int, max_chars: int, cache_folder: Path, data_key: str,
                concurrency: int, on_done: Callable[[], None] = lambda: None) -> tuple[dict[str, dict[str, Any]], float]:
    """Answer every question with ``variant`` (cached ones are not asked again); returns the records by
    question id and the seconds this call spent answering."""
    from rag_runtime import AnswerAgent

    agent_kwargs = {"k": k, "max_chars_per_chunk": max_chars, "min_similarity": settings["min_similarity"],
                    "selection_weight": settings["selection_weight"], "dense_weight": settings["dense_weight"],
                    "min_answer_score": settings["min_answer_score"] if variant.answer_bar else None}
    cache = AnswerCache(cache_folder, variant.name, cache_key(variant, settings, data_key, agent_kwargs))
    todo = [q for q in questions.values() if q.id not in cache.records]
    for _ in range(len(questions) - len(todo)):
        on_done()
    t0 = time.perf_counter()
    try:
        if todo:
            if variant.oracle:
                retriever = OracleRetriever(index, {q.text.strip(): q.paragraph for q in questions.values()})
            else:
                retriever = index.retriever("hybrid", dense_weight=settings["dense_weight"])
            agent = AnswerAgent(retriever, model if variant.uses_llm else _no_model(), k=k,
                                min_similarity=settings["min_similarity"], mode=variant.mode,
                                max_chars_per_chunk=max_chars, style=variant.style, selection=variant.selection,
                                ranking=variant.ranking, selection_weight=settings["selection_weight"],
                                min_answer_score=agent_kwargs["min_answer_score"],
                                check_question=variant.check_question, sentence_encoder=encoder)
            asyncio.run(_answer_all(agent, todo, cache, concurrency if variant.uses_llm else 1, on_done))
    finally:
        cache.close()
    return {q: cache.records[q] for q in questions if q in cache.records}, time.perf_counter() - t0


def _no_model() -> Any:
    """A model for the no-LLM variants that fails loudly if it is ever called."""
    from pydantic_ai.models.function import FunctionModel
    from pydantic_ai.profiles import ModelProfile

    def never(messages, info):  # pragma: no cover - a no-LLM variant must not reach the model
        raise AssertionError("a no-LLM variant called the model")

    return FunctionModel(never, profile=ModelProfile(supports_json_schema_output=True,
                                                     default_structured_output_mode="native"))
