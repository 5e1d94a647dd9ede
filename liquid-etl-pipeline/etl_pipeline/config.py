"""``EtlConfig``: every knob of one ETL run, validated, with a fingerprint for incremental runs.

Two runs with the same fingerprint produce the same records for an unchanged document, so a
re-run may reuse that document's finished shard. Knobs that only change *how fast* a run goes
(concurrency, documents in flight, progress display) are left out of the fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The monorepo root when the package is used from a checkout (the shipped samples live there)."""

DEFAULT_INPUT_DIR = PROJECT_ROOT / "data" / "samples"
DEFAULT_RUNS_DIR = PROJECT_ROOT / "data" / "runs"

DEFAULT_CATEGORIES: tuple[str, ...] = (
    "science",
    "technology",
    "history",
    "health",
    "nature",
    "society",
    "howto",
)

LLM_STAGES: tuple[str, ...] = ("metadata", "classify", "taxonomy", "facts", "summary", "qa", "judge")
"""Every per-chunk LLM stage, in the order the naive baseline runs them."""

PROMPT_VERSION = 6
"""Bump when a prompt or an output schema changes: it invalidates finished shards."""


class EtlConfig(BaseModel):
    """Settings of one run. Paths are resolved; everything else is plain data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_dir: Path = Field(DEFAULT_INPUT_DIR, description="Folder scanned recursively for documents.")
    output_dir: Path = Field(DEFAULT_RUNS_DIR / "samples-offline", description="The run folder.")
    profile: str = Field("offline", description="Model profile (liquid_shared.models.get_profile).")
    concurrency: int = Field(
        16, ge=1, le=256, description="Most LLM requests in flight per stage (= the model's batch size)."
    )
    docs_in_flight: int | None = Field(
        None, ge=1, description="Most documents processed at once; None = concurrency (enough chunks in flight to fill batches)."
    )
    limit: int | None = Field(None, ge=1, description="Process only the first N documents (sorted by source).")
    dry_run: bool = Field(False, description="Discover and chunk only; no model, no outputs written.")

    # chunking
    max_chunk_tokens: int = Field(160, ge=16, le=2048, description="Token budget of one chunk.")
    min_chunk_tokens: int = Field(24, ge=0, description="A section tail shorter than this joins its neighbour.")
    max_chunks_per_doc: int = Field(
        48, ge=1, description="Cap per document; a longer one is truncated and the truncation recorded."
    )
    max_file_mb: float = Field(64.0, gt=0, description="Files larger than this are refused with an error.")
    llm_boundaries: bool = Field(False, description="Let the chunking model propose section boundaries.")

    # LLM stages
    stages: tuple[str, ...] = Field(LLM_STAGES, description="Which per-chunk LLM stages run.")
    categories: tuple[str, ...] = Field(DEFAULT_CATEGORIES, min_length=2, description="Classification labels.")
    qa_per_chunk: int = Field(2, ge=1, le=4, description="Most QA pairs generated per chunk.")
    # abstractive stays the default: on the SQuAD paragraphs with SmolLM2-135M extractive mode did not
    # give more valid pairs per chunk (docs/results.md, qa_generation); switch when a model does
    qa_mode: Literal["extractive", "abstractive"] = Field(
        "abstractive",
        description="'extractive': answer-first (a span of the chunk), a question for it, a reader's span under the "
        "copy constraint, kept when the reader agrees; 'abstractive': the model writes question and answer freely.",
    )
    # 0.5 is chosen a priori, not tuned on any evaluation data: Alberti et al. 2019 require an exact
    # match (F1 = 1), which a 135M reader rarely reaches on multi-word spans; 0.5 accepts a reader span
    # sharing most words with the intended one ("King Charles III" for "Charles III").
    roundtrip_threshold: float = Field(
        0.5, ge=0, le=1, description="Extractive mode: least token F1 between the reader's span and the intended answer."
    )
    judge_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Least judge score of a valid QA pair; None = the profile's default "
        "(0 for 'offline', whose 135M judge is at chance level, so its verdict is recorded but advisory; 0.5 otherwise).",
    )
    grounding_threshold: float = Field(
        0.6, ge=0, le=1, description="Least share of the answer's content words found in the chunk."
    )
    dedup_threshold: float = Field(
        0.92, ge=0, le=1, description="Questions of one document closer than this (cosine) are near-duplicates."
    )
    temperature: float | None = Field(
        0.0, ge=0, description="Sampling temperature; 0 = greedy (default: faithful extraction, reproducible runs); None = the model's default."
    )
    jsonl_text_field: str = Field("text", description="Field of a .jsonl record that holds its text.")

    @field_validator("input_dir", "output_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return Path(value).expanduser().resolve()

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(LLM_STAGES))
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; choose from {list(LLM_STAGES)}")
        if "judge" in value and "qa" not in value:
            raise ValueError("stage 'judge' needs stage 'qa' (it judges the generated QA pairs)")
        return tuple(s for s in LLM_STAGES if s in value)

    @field_validator("categories")
    @classmethod
    def _clean_categories(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(dict.fromkeys(c.strip().lower() for c in value if c.strip()))
        if len(cleaned) < 2:
            raise ValueError(f"need at least two distinct categories, got {list(value)}")
        return cleaned

    @property
    def effective_judge_threshold(self) -> float:
        if self.judge_threshold is not None:
            return self.judge_threshold
        return 0.0 if self.profile == "offline" else 0.5

    @property
    def effective_docs_in_flight(self) -> int:
        return self.docs_in_flight or self.concurrency

    def fingerprint(self) -> str:
        """Hash of every setting that changes a document's records."""
        keys = {
            "profile": self.profile,
            "max_chunk_tokens": self.max_chunk_tokens,
            "min_chunk_tokens": self.min_chunk_tokens,
            "max_chunks_per_doc": self.max_chunks_per_doc,
            "llm_boundaries": self.llm_boundaries,
            "stages": list(self.stages),
            "categories": list(self.categories),
            "qa_per_chunk": self.qa_per_chunk,
            "qa_mode": self.qa_mode,
            "roundtrip_threshold": self.roundtrip_threshold,
            "judge_threshold": self.effective_judge_threshold,
            "grounding_threshold": self.grounding_threshold,
            "dedup_threshold": self.dedup_threshold,
            "temperature": self.temperature,
            "jsonl_text_field": self.jsonl_text_field,
            "prompt_version": PROMPT_VERSION,
        }
        return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]
