"""Metadata filters and boosts over the four filterable fields: source, tags, categories, TMD.

Semantics (values compare case-insensitively):

* a field given as a list passes a document when the document matches **any** of its values;
* a filter passes a document when **every** field it sets passes;
* ``tmd`` values match a document's TMD code exactly or as a dotted prefix
  (``"science"`` and ``"science.qa"`` both match ``"science.qa.short"``).

A boost multiplies the (fused) score of every document that matches ``field = value`` by ``factor``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

FilterField = Literal["source", "tags", "categories", "tmd"]
FILTER_FIELDS: tuple[str, ...] = ("source", "tags", "categories", "tmd")
MAX_FILTER_VALUES = 100


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class MetadataFilter(BaseModel):
    """Which documents a search may return. Unset fields do not filter."""

    model_config = ConfigDict(extra="forbid")

    source: list[str] | None = Field(None, max_length=MAX_FILTER_VALUES)
    tags: list[str] | None = Field(None, max_length=MAX_FILTER_VALUES)
    categories: list[str] | None = Field(None, max_length=MAX_FILTER_VALUES)
    tmd: list[str] | None = Field(None, max_length=MAX_FILTER_VALUES)

    @field_validator("source", "tags", "categories", "tmd", mode="before")
    @classmethod
    def _single_value_to_list(cls, value: Any) -> Any:
        return _as_list(value)

    def is_empty(self) -> bool:
        return all(getattr(self, f) is None for f in FILTER_FIELDS)


class MetadataBoost(BaseModel):
    """Multiply the score of documents whose ``field`` matches ``value`` by ``factor``."""

    model_config = ConfigDict(extra="forbid")

    field: FilterField
    value: str = Field(min_length=1, max_length=200)
    factor: float = Field(gt=0, le=100)


def _norm(value: str) -> str:
    return value.strip().casefold()


def doc_field_values(metadata: Mapping[str, Any], field: str) -> list[str]:
    """The normalised values a document holds for one filter field (empty when it has none)."""
    raw = metadata.get(field)
    if raw is None:
        return []
    values = [raw] if isinstance(raw, str) else list(raw)
    return [_norm(str(v)) for v in values if str(v).strip()]


class FilterIndex:
    """Inverted lists (value -> document rows) per field, to turn a filter into a boolean mask."""

    def __init__(self, metadatas: Sequence[Mapping[str, Any]]):
        self.n_docs = len(metadatas)
        rows: dict[str, dict[str, list[int]]] = {f: defaultdict(list) for f in FILTER_FIELDS}
        for row, meta in enumerate(metadatas):
            for field in FILTER_FIELDS:
                for value in dict.fromkeys(doc_field_values(meta, field)):
                    rows[field][value].append(row)
        self._rows = {f: {v: np.asarray(r, dtype=np.int64) for v, r in d.items()} for f, d in rows.items()}

    def values(self, field: str) -> list[str]:
        return sorted(self._rows[field])

    def _field_mask(self, field: str, wanted: Iterable[str]) -> np.ndarray:
        mask = np.zeros(self.n_docs, dtype=bool)
        index = self._rows[field]
        for value in wanted:
            value = _norm(value)
            if field == "tmd":
                for code, rows in index.items():
                    if code == value or code.startswith(value + "."):
                        mask[rows] = True
            elif value in index:
                mask[index[value]] = True
        return mask

    def mask(self, filters: MetadataFilter | None) -> np.ndarray | None:
        """Boolean mask of the documents that pass, or ``None`` when the filter filters nothing."""
        if filters is None or filters.is_empty():
            return None
        mask = np.ones(self.n_docs, dtype=bool)
        for field in FILTER_FIELDS:
            wanted = getattr(filters, field)
            if wanted is not None:
                mask &= self._field_mask(field, wanted)
        return mask

    def boost_factors(self, boosts: Sequence[MetadataBoost]) -> np.ndarray | None:
        """Per-document product of the factors of the boosts it matches (``None`` without boosts)."""
        if not boosts:
            return None
        factors = np.ones(self.n_docs, dtype=np.float64)
        for boost in boosts:
            factors[self._field_mask(boost.field, [boost.value])] *= boost.factor
        return factors
