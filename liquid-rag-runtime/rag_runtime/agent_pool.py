"""Answers chosen per request: the ``AnswerAgent`` for a request's ``answer_mode`` and ``answer_style``.

A server is started with a default mode and style and the modes and styles a request may choose
(default: all of them). ``AgentPool.agent(answer_mode, answer_style)`` checks the choice against
what is allowed (``AnswerChoiceError``, a ``ValueError`` naming the choice and what is allowed),
then returns the agent for it, made on first use; all agents share one model object, made once
(``AnswerUnavailable`` when it cannot be made; the next request tries again). An extractive
answer needs the context mode, so ``auto`` with ``extractive`` is ``context``.

With ``earlier`` (a chat's earlier user turns) the agent retrieves with the conversation
(``conversation.ConversationRetriever``); such an agent is made for the request (a pydantic-ai
``Agent`` is cheap to make; the model is shared).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, get_args

from rag_runtime.answer import (
    DEFAULT_MIN_SIMILARITY,
    AnswerAgent,
    AnswerMode,
    AnswerStyle,
    SupportPolicy,
)
from rag_runtime.conversation import ConversationRetriever
from rag_runtime.retriever import Retriever

ANSWER_MODES: tuple[str, ...] = get_args(AnswerMode)
ANSWER_STYLES: tuple[str, ...] = get_args(AnswerStyle)


class AnswerChoiceError(ValueError):
    """A request chose an answer mode or style this server does not allow (or that cannot combine)."""


class AnswerUnavailable(RuntimeError):
    """The answer model could not be made."""


def _checked(kind: str, value: str, known: tuple[str, ...], allowed: Sequence[str]) -> str:
    if value not in known:
        raise AnswerChoiceError(f"{kind} must be one of {', '.join(known)}, got {value!r}")
    if value not in allowed:
        raise AnswerChoiceError(f"{kind} {value!r} is not allowed on this server (allowed: {', '.join(allowed)})")
    return value


class AgentPool:
    """The answer agents a server may use (see the module docstring)."""

    def __init__(
        self,
        retriever: Retriever,
        model: Any = None,
        *,
        answer_mode: str = "auto",
        answer_style: str = "generative",
        allowed_modes: Sequence[str] | None = None,
        allowed_styles: Sequence[str] | None = None,
        support: SupportPolicy = "flag",
        min_similarity: float = DEFAULT_MIN_SIMILARITY,
    ):
        self.allowed_modes = tuple(allowed_modes or ANSWER_MODES)
        self.allowed_styles = tuple(allowed_styles or ANSWER_STYLES)
        for kind, values, known in (("answer_mode", self.allowed_modes, ANSWER_MODES),
                                    ("answer_style", self.allowed_styles, ANSWER_STYLES)):
            unknown = [v for v in values if v not in known]
            if unknown:
                raise ValueError(f"allowed {kind}s: unknown {', '.join(map(repr, unknown))} (choose from {', '.join(known)})")
        if answer_mode not in self.allowed_modes:
            raise ValueError(f"the default answer_mode {answer_mode!r} is not among the allowed ones ({', '.join(self.allowed_modes)})")
        if answer_style not in self.allowed_styles:
            raise ValueError(f"the default answer_style {answer_style!r} is not among the allowed ones ({', '.join(self.allowed_styles)})")
        self.retriever, self._model = retriever, model
        self.answer_mode, self.answer_style = answer_mode, answer_style
        self.support, self.min_similarity = support, min_similarity
        self._agents: dict[tuple[str, str], AnswerAgent] = {}
        self._lock = threading.Lock()

    def choice(self, answer_mode: str | None = None, answer_style: str | None = None) -> tuple[str, str]:
        """The (mode, style) a request gets: its own choice or the server's default, checked."""
        style = _checked("answer_style", answer_style or self.answer_style, ANSWER_STYLES, self.allowed_styles)
        mode = _checked("answer_mode", answer_mode or self.answer_mode, ANSWER_MODES, self.allowed_modes)
        if style == "extractive":
            if mode == "tool":
                raise AnswerChoiceError("answer_style 'extractive' needs answer_mode 'context' or 'auto', not 'tool'")
            mode = "context"
        return mode, style

    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                try:
                    from liquid_shared.models import model_for_role

                    self._model = model_for_role("answer")
                except Exception as exc:
                    raise AnswerUnavailable(f"answer model unavailable: {type(exc).__name__}: {exc}") from exc
            return self._model

    def _make(self, retriever: Retriever, mode: str, style: str) -> AnswerAgent:
        model = self.model()
        try:
            return AnswerAgent(retriever, model, mode=mode, style=style, support=self.support,
                               min_similarity=self.min_similarity)
        except ValueError as exc:  # e.g. extractive with a model that has no native output
            raise AnswerChoiceError(str(exc)) from exc
        except Exception as exc:
            raise AnswerUnavailable(f"answer model unavailable: {type(exc).__name__}: {exc}") from exc

    def agent(self, answer_mode: str | None = None, answer_style: str | None = None,
              earlier: Sequence[str] = ()) -> AnswerAgent:
        """The agent for a request (see the module docstring)."""
        mode, style = self.choice(answer_mode, answer_style)
        if earlier:
            return self._make(ConversationRetriever(self.retriever, earlier), mode, style)
        with self._lock:
            agent = self._agents.get((mode, style))
        if agent is None:
            agent = self._make(self.retriever, mode, style)
            with self._lock:
                agent = self._agents.setdefault((mode, style), agent)
        return agent
