"""Cited answers: a Pydantic AI agent that answers from retrieved chunks and cites their ids.

Two ways to get the chunks to the model, chosen by ``mode``:

* ``"tool"``: the agent has a ``search_chunks(query)`` tool and decides what to search for; its
  citations are checked against the ids the tool returned (a wrong id is sent back for a retry).
* ``"context"`` (retrieve-then-generate): we retrieve for the question, put the chunks in the
  prompt, and ask for structured output whose ``citations`` field is an enum of exactly those ids,
  so a model with constrained decoding cannot cite anything else.
* ``"auto"`` (default): ``"context"`` when the model has native (constrained) JSON-schema output,
  since then a wrong citation is impossible; otherwise ``"tool"`` when the model supports tools;
  otherwise ``"context"``. Measured reason: the offline SmolLM2-135M supports tool calls through
  a grammar, but in tool mode it answered before searching and cited an id it made up, failing
  every retry, while in context mode it answered with valid citations.

Refusal is decided by retrieval, before any generation: a chunk counts as relevant when its dense
(cosine) score is at least ``min_similarity``; for a BM25-only retriever, when it shares a term with
the question (score > 0). No relevant chunk: the answer is a refusal and the model is not called.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model
from pydantic_ai import Agent, ModelRetry, RunContext
from pydantic_ai.exceptions import AgentRunError

from rag_runtime.filters import MetadataFilter
from rag_runtime.hits import Hit
from rag_runtime.retriever import Retriever

AnswerMode = Literal["auto", "tool", "context"]
REFUSAL = "I can't answer that from the indexed documents: nothing relevant was found."
MAX_ANSWER_CHARS = 600
MAX_CITATIONS = 3
# all-MiniLM-L6-v2 cosine. On SciFact test, the best chunk of 99% of the 300 real queries scores >= 0.353
# (minimum 0.334); six off-topic questions (capitals, football, pizza, car tyres...) scored 0.16-0.31.
DEFAULT_MIN_SIMILARITY = 0.35

INSTRUCTIONS = (
    "You answer questions using only the context chunks you are given. "
    "Write a short answer of one to three sentences. "
    "Put the ids of the chunks that support your answer in `citations`. "
    "Do not use outside knowledge."
)
TOOL_INSTRUCTIONS = (
    "You answer questions using only chunks found with the `search_chunks` tool. "
    "First call `search_chunks` with a search query. Then write a short answer of one to three "
    "sentences and put the ids of the chunks that support it in `citations`. "
    "Do not use outside knowledge."
)


class AnswerError(RuntimeError):
    """The answer model failed (could not produce a valid answer within its retries)."""


class Answer(BaseModel):
    """A cited answer, or a refusal (``refused=True``, ``citations`` empty)."""

    question: str
    answer: str
    citations: list[str] = Field(default_factory=list, description="Ids of the chunks the answer rests on.")
    refused: bool = False
    reason: str | None = None
    mode: Literal["tool", "context"]
    context: list[Hit] = Field(default_factory=list, description="The relevant chunks retrieved, best first.")


class ToolAnswer(BaseModel):
    """What the model returns in tool mode (ids checked by an output validator)."""

    answer: str = Field(min_length=1, max_length=MAX_ANSWER_CHARS)
    citations: list[str] = Field(min_length=1, max_length=MAX_CITATIONS)


def cited_answer_type(ids: Sequence[str]) -> type[BaseModel]:
    """Output type for context mode: ``citations`` may only hold the given chunk ids."""
    allowed = Literal[tuple(dict.fromkeys(ids))]  # type: ignore[valid-type]
    return create_model(
        "CitedAnswer",
        answer=(str, Field(min_length=1, max_length=MAX_ANSWER_CHARS)),
        citations=(list[allowed], Field(min_length=1, max_length=min(MAX_CITATIONS, len(ids)))),
    )


def choose_mode(model: Any) -> Literal["tool", "context"]:
    """What ``mode="auto"`` picks for a model (see the module docstring)."""
    profile = getattr(model, "profile", None) or {}
    if profile.get("supports_json_schema_output", False) and profile.get("default_structured_output_mode") == "native":
        return "context"
    return "tool" if profile.get("supports_tools", True) else "context"


def relevant_hits(hits: Sequence[Hit], min_similarity: float) -> list[Hit]:
    """The hits that clear the relevance bar (see the module docstring)."""
    if any("dense" in h.scores for h in hits):
        return [h for h in hits if h.scores.get("dense", float("-inf")) >= min_similarity]
    return [h for h in hits if h.scores.get("bm25", h.score) > 0]


def format_context(hits: Sequence[Hit], max_chars: int) -> str:
    parts = []
    for h in hits:
        text = h.text if len(h.text) <= max_chars else h.text[:max_chars].rsplit(" ", 1)[0] + " ..."
        title = f"{h.title}: " if h.title else ""
        parts.append(f"[{h.id}] {title}{text}")
    return "\n\n".join(parts)


@dataclass
class _ToolDeps:
    question: str
    filters: MetadataFilter | None
    fallback: list[Hit]
    seen: dict[str, Hit] = field(default_factory=dict)


class AnswerAgent:
    """Answer questions from a retriever's chunks, with citations, or refuse.

    >>> agent = AnswerAgent(index.retriever("hybrid"))          # default offline model
    >>> answer = await agent.ask("What does X cause?")
    """

    def __init__(
        self,
        retriever: Retriever,
        model: Any = None,
        *,
        k: int = 4,
        min_similarity: float = DEFAULT_MIN_SIMILARITY,
        mode: AnswerMode = "auto",
        max_chars_per_chunk: int = 700,
    ):
        if model is None:
            from liquid_shared.models import model_for_stage

            model = model_for_stage("answer")
        if mode == "auto":
            mode = choose_mode(model)
        if mode not in ("tool", "context"):
            raise ValueError(f"mode must be 'auto', 'tool' or 'context', got {mode!r}")
        self.retriever, self.model, self.mode = retriever, model, mode
        self.k, self.min_similarity, self.max_chars = k, min_similarity, max_chars_per_chunk
        if mode == "context":
            self._agent = Agent(model, instructions=INSTRUCTIONS, retries=2)
        else:
            self._agent = self._tool_agent(model)

    def _tool_agent(self, model: Any) -> Agent:
        agent = Agent(model, deps_type=_ToolDeps, output_type=ToolAnswer, instructions=TOOL_INSTRUCTIONS, retries=2)

        @agent.tool
        async def search_chunks(ctx: RunContext[_ToolDeps], query: str) -> str:
            """Search the indexed documents; returns chunks as `[id] text`."""
            hits = await asyncio.to_thread(self.retriever.search, query, self.k, ctx.deps.filters)
            hits = relevant_hits(hits, self.min_similarity) or ctx.deps.fallback
            for h in hits:
                ctx.deps.seen.setdefault(h.id, h)
            return format_context(hits, self.max_chars)

        @agent.output_validator
        def cite_only_seen(ctx: RunContext[_ToolDeps], output: ToolAnswer) -> ToolAnswer:
            if not ctx.deps.seen:
                raise ModelRetry("Call `search_chunks` first, then answer from the chunks it returns.")
            unknown = [c for c in output.citations if c not in ctx.deps.seen]
            if unknown:
                raise ModelRetry(f"Cite only ids returned by `search_chunks` ({', '.join(ctx.deps.seen)}); "
                                 f"not {', '.join(unknown)}.")
            return output

        return agent

    async def ask(self, question: str, *, k: int | None = None, filters: MetadataFilter | None = None) -> Answer:
        question = question.strip()
        if not question:
            raise ValueError("question is empty")
        hits = await asyncio.to_thread(self.retriever.search, question, k or self.k, filters)
        relevant = relevant_hits(hits, self.min_similarity)
        if not relevant:
            return Answer(question=question, answer=REFUSAL, refused=True, mode=self.mode,
                          reason=f"no retrieved chunk reached the relevance bar (dense similarity >= {self.min_similarity})")
        try:
            if self.mode == "context":
                return await self._ask_with_context(question, relevant)
            return await self._ask_with_tool(question, filters, relevant)
        except AgentRunError as exc:
            raise AnswerError(f"the answer model failed on {question[:80]!r}: {exc}") from exc

    async def _ask_with_context(self, question: str, relevant: list[Hit]) -> Answer:
        prompt = f"Context:\n{format_context(relevant, self.max_chars)}\n\nQuestion: {question}"
        result = await self._agent.run(prompt, output_type=cited_answer_type([h.id for h in relevant]))
        out = result.output
        return Answer(question=question, answer=out.answer.strip(), citations=list(dict.fromkeys(out.citations)),
                      mode="context", context=relevant)

    async def _ask_with_tool(self, question: str, filters: MetadataFilter | None, relevant: list[Hit]) -> Answer:
        deps = _ToolDeps(question=question, filters=filters, fallback=relevant)
        result = await self._agent.run(question, deps=deps)
        out = result.output
        return Answer(question=question, answer=out.answer.strip(), citations=list(dict.fromkeys(out.citations)),
                      mode="tool", context=list(deps.seen.values()))
