"""The interface every retriever implements (BM25, dense, hybrid, and any you add)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from rag_runtime.filters import MetadataFilter
from rag_runtime.hits import Hit


@runtime_checkable
class Retriever(Protocol):
    """``search`` one query or ``search_many`` in a batch; hits come best first, at most ``k``."""

    name: str

    def search(self, query: str, k: int = 10, filters: MetadataFilter | None = None) -> list[Hit]: ...

    def search_many(
        self, queries: Sequence[str], k: int = 10, filters: MetadataFilter | None = None
    ) -> list[list[Hit]]: ...
