"""Answerability: a reader model answers each question from its context; the answer is scored
against the set's own answer with SQuAD exact match and token F1 (``liquid_shared.metrics``).

The reader is a Pydantic AI agent over the shared model registry (the offline SmolLM2 by default),
decoding greedily into a short bounded answer; all questions are sent at once and the registry's
micro-batcher groups them into batched ``generate`` calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

READER_INSTRUCTIONS = ("Answer the question using only the context. Reply with a short phrase copied from the "
                       "context, not a sentence.")


class ReaderAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answer: str = Field(max_length=90, description="A short phrase copied from the context.")


@dataclass
class ReaderScore:
    prediction: str
    exact_match: float
    f1: float
    error: str | None = None


def reader_prompt(context: str, question: str) -> str:
    return f"Context:\n{context}\n\nQuestion: {question}"


async def _answer_all(model, items: Sequence[tuple[str, str]], concurrency: int,
                      on_done: Callable[[], None] | None) -> list[tuple[str, str | None]]:
    from pydantic_ai import Agent

    agent = Agent(model, output_type=ReaderAnswer, instructions=READER_INSTRUCTIONS, name="ft-quality-reader",
                  retries={"output": 1})
    semaphore = asyncio.Semaphore(concurrency)

    async def one(context: str, question: str) -> tuple[str, str | None]:
        async with semaphore:
            try:
                result = await agent.run(reader_prompt(context, question), model_settings={"temperature": 0.0})
                out = (result.output.answer.strip(), None)
            except Exception as exc:  # a reader failure scores 0 for this item, it does not stop the set
                from liquid_shared.models import ModelLoadError

                if isinstance(exc, ModelLoadError):
                    raise
                out = ("", f"{type(exc).__name__}: {str(exc)[:200]}")
        if on_done:
            on_done()
        return out

    return await asyncio.gather(*(one(c, q) for c, q in items))


def score_answers(items: Sequence[tuple[str, str, str]], model=None, *, concurrency: int = 8,
                  on_done: Callable[[], None] | None = None) -> list[ReaderScore]:
    """``items`` are (context, question, reference answer); returns one score per item, in order."""
    from liquid_shared.metrics import exact_match, token_f1

    if model is None:
        from liquid_shared.models import default_model

        model = default_model()
    if not items:
        return []
    answers = asyncio.run(_answer_all(model, [(c, q) for c, q, _ in items], concurrency, on_done))
    scores = []
    for (_, _, reference), (prediction, error) in zip(items, answers, strict=True):
        if error is not None or not reference.strip():
            scores.append(ReaderScore(prediction, 0.0, 0.0, error or "empty reference answer"))
        else:
            scores.append(ReaderScore(prediction, exact_match(prediction, reference), token_f1(prediction, reference)))
    return scores
