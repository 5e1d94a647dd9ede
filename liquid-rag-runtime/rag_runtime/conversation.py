"""Follow-up questions: retrieval that reads the earlier turns of a conversation.

"And when was it built?" names nothing to retrieve; the question before it does. A
``ConversationRetriever`` searches with the current question followed by the earlier user turns,
most recent first (``contextual_query``). The current question comes first because the dense
encoder truncates long inputs (all-MiniLM-L6-v2: 256 word pieces): the history may be cut, the
question never. Only the retrieval query changes: the model is asked the question as the user
wrote it, over the chunks retrieved this way. No model rewrites the question (a 135M model would
rewrite it unreliably, and it would cost a model call per turn).
"""

from __future__ import annotations

from collections.abc import Sequence

from rag_runtime.filters import MetadataFilter
from rag_runtime.hits import Hit
from rag_runtime.retriever import Retriever

HISTORY_TURNS = 2  # earlier user turns read: enough for "who designed it?" after "tell me about X"
MAX_HISTORY_CHARS = 600


def contextual_query(question: str, earlier: Sequence[str], turns: int = HISTORY_TURNS,
                     max_chars: int = MAX_HISTORY_CHARS) -> str:
    """``question`` followed by the last ``turns`` of ``earlier`` (oldest first in ``earlier``),
    most recent first, the history cut to ``max_chars`` characters."""
    history = " ".join(t.strip() for t in reversed(list(earlier)[-turns:]) if t.strip())
    if not history:
        return question
    return f"{question} {history[:max_chars]}"


class ConversationRetriever:
    """A ``Retriever`` that searches ``contextual_query(query, earlier)`` with ``base``."""

    def __init__(self, base: Retriever, earlier: Sequence[str]):
        self.base, self.earlier = base, list(earlier)
        self.name = getattr(base, "name", "conversation")

    def search(self, query: str, k: int = 10, filters: MetadataFilter | None = None) -> list[Hit]:
        return self.base.search(contextual_query(query, self.earlier), k, filters)

    def search_many(self, queries: Sequence[str], k: int = 10, filters: MetadataFilter | None = None) -> list[list[Hit]]:
        return self.base.search_many([contextual_query(q, self.earlier) for q in queries], k, filters)
