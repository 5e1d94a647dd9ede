"""``EtlConfig``: every knob of one ETL run, validated, with a fingerprint for incremental runs.

Two runs with the same fingerprint produce the same records for an unchanged document, so a
re-run may reuse that document's finished shard. The fingerprint (``fingerprint_settings``)
covers every setting that changes a record: the chunking and stage knobs, the full model spec of
every model role after ``role_models`` overrides, the dtype and device kind each model resolves to
(``LIQUID_DTYPE``/``LIQUID_DEVICE``), the embedding model, the prompt version and a hash of the
source of every module that shapes a record (chunker, prompts, output schemas, TMD table,
assembly). Knobs that only change *how fast* a run goes (concurrency, documents in flight, the
chunk window, progress display) or what it may overwrite (``force``) are left out.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The monorepo root when the package is used from a checkout (the shipped samples live there)."""

DEFAULT_INPUT_DIR = PROJECT_ROOT / "data" / "samples"
DEFAULT_RUNS_DIR = Path("data") / "runs"
"""Run folders go under the current folder (so ``liquid rag build-index data/runs/...`` finds them)."""

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
"""Bump when a prompt or an output schema changes: it invalidates finished shards (the code hash
below also catches an edit to those modules)."""

RECORD_SHAPING_MODULES: tuple[str, ...] = (
    "etl_pipeline/assemble.py",
    "etl_pipeline/chunking.py",
    "etl_pipeline/dedup.py",
    "etl_pipeline/extractive.py",
    "etl_pipeline/fallbacks.py",
    "etl_pipeline/formats.py",
    "etl_pipeline/grounding.py",
    "etl_pipeline/llm_stages.py",
    "etl_pipeline/loaders.py",
    "etl_pipeline/precision_checks.py",
    "etl_pipeline/sentences.py",
    "etl_pipeline/stage_outputs.py",
    "etl_pipeline/text_decoding.py",
    "etl_pipeline/tmd.py",
    "etl_pipeline/token_counter.py",
)
"""Source files whose text is hashed into the fingerprint (paths under the package's parent)."""

MODEL_ROLES_USED: tuple[str, ...] = ("chunking", "metadata", "summary", "qa", "validation")
"""Model roles the ETL draws models from (``llm_stages.STAGE_ROLE`` maps ETL stages onto them)."""


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
    max_chunks_per_doc: int | None = Field(
        None, ge=1, description="Cap per document (None = the whole document); a longer one is truncated and the truncation recorded."
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
    prompt_layout: Literal["instructions-first", "passage-first"] = Field(
        "instructions-first",
        description="'instructions-first': the stage's instructions and output fields in the system turn, the "
        "passage in the user turn (the shared-prefix cache reuses each stage's instructions across chunks); "
        "'passage-first': a common system text and the passage first, the stage's instructions and output fields "
        "after it (the cache reuses each chunk's passage across its stages; fewer prefill tokens, other wording of "
        "the outputs: docs/benchmarks.md).",
    )
    validation_profile: Literal["standard", "precision"] = Field(
        "standard",
        description="'standard': well formed, grounded, the judge where it gates, the extractive roundtrip; "
        "'precision': those plus checks that use no LLM (the question retrieves its own chunk first, does not hold "
        "its answer, is no prompt example or copy of the first sentence; the answer is a span of the chunk; the "
        "reader's span is exactly the intended one): fewer pairs, more of them right (docs/results.md).",
    )
    min_precision: float = Field(
        0.8, ge=0, le=1, description="Below this calibrated kept-pair precision (or with none measured) the run warns "
        "that its fine-tuning data is unverified.",
    )
    require_precision: float | None = Field(
        None, ge=0, le=1, description="Refuse to run (and so to write fine-tuning data) unless the calibrated "
        "kept-pair precision of the model and validation profile reaches this; None = no requirement.",
    )
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
    jsonl_id_field: str = Field(
        "id", description="Field of a .jsonl record that names it; a record without one is named by its content hash."
    )
    role_models: dict[str, str] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("role_models", "stage_models"),  # stage_models: the name before 2026-12
        description="Per model role ('metadata', 'summary', 'qa', 'validation', 'chunking'), a model id "
        "replacing the profile's; the rest of the stage's spec is kept.",
    )
    prefix_cache_mb: float | None = Field(
        None, ge=0, description="Shared-prefix cache of the in-process models (MB; each stage's system turn is "
        "prefilled once, then reused): 0 disables it; None = the model's spec or LIQUID_PREFIX_CACHE_MB (256). "
        "Greedy records are the same either way.",
    )
    chunk_window: int = Field(
        32, ge=1, description="Chunks of one document whose LLM stages are in flight at once (bounds memory on long documents)."
    )
    force: bool = Field(False, description="Reuse an output folder that was made for another input folder.")

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

    @field_validator("role_models")
    @classmethod
    def _known_roles(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(MODEL_ROLES_USED))
        if unknown:
            raise ValueError(f"role_models: unknown model role(s) {unknown}; choose from {list(MODEL_ROLES_USED)}")
        return value

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

    def role_specs(self) -> dict[str, Any]:
        """The ``ModelSpec`` of every model role the ETL uses, ``role_models`` overrides applied."""
        from liquid_shared.models import get_profile

        profile = get_profile(self.profile)
        specs = {}
        for role in MODEL_ROLES_USED:
            spec = profile.spec_for(role)
            if role in self.role_models:
                spec = spec.model_copy(update={"model": self.role_models[role]})
            if self.prefix_cache_mb is not None and not spec.is_remote:
                spec = spec.model_copy(update={"prefix_cache_mb": self.prefix_cache_mb})
            specs[role] = spec
        return specs

    def fingerprint_settings(self) -> dict[str, Any]:
        """Every setting that changes a document's records (what ``fingerprint`` hashes)."""
        from liquid_shared.config import get_settings

        settings = get_settings()
        return _fingerprint_settings(self.model_dump_json(exclude=_SPEED_ONLY), settings.dtype, settings.device)

    def fingerprint(self) -> str:
        """Hash of ``fingerprint_settings``: equal fingerprints, equal records."""
        return hashlib.sha256(json.dumps(self.fingerprint_settings(), sort_keys=True).encode()).hexdigest()[:16]


_SPEED_ONLY = {"input_dir", "output_dir", "concurrency", "docs_in_flight", "limit", "dry_run", "chunk_window", "force",
               "prefix_cache_mb", "min_precision", "require_precision"}
# min_precision and require_precision only decide what a run says about its records and whether it runs


@lru_cache(maxsize=64)
def _fingerprint_settings(config_json: str, dtype: str | None, device: str | None) -> dict[str, Any]:
    from liquid_shared.embeddings import DEFAULT_EMBEDDING_MODEL
    from liquid_shared.models.loading import placement_for

    cfg = EtlConfig.model_validate_json(config_json)
    models = {}
    for role, spec in cfg.role_specs().items():
        try:
            placement = placement_for(spec)
            resolved = {"dtype": placement.label, "device_type": placement.device.type}
        except Exception as exc:  # an unusable device is reported when the model loads; keep the request
            resolved = {"dtype": spec.dtype or dtype, "device_type": spec.device or device, "error": type(exc).__name__}
        models[role] = {"spec": spec.model_dump(mode="json"), **resolved}
    knobs = json.loads(config_json)
    knobs["judge_threshold"] = cfg.effective_judge_threshold
    knobs.pop("role_models", None)  # folded into models
    return {
        **knobs,
        "models": models,
        "embedding_model": DEFAULT_EMBEDDING_MODEL,
        "prompt_version": PROMPT_VERSION,
        "code_version": code_version(),
    }


@lru_cache(maxsize=1)
def code_version() -> str:
    """Hash of the source of every module that shapes a record (``RECORD_SHAPING_MODULES``)."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for rel in RECORD_SHAPING_MODULES:
        digest.update(rel.encode())
        digest.update((root / rel).read_bytes())
    return digest.hexdigest()[:16]


def changed_settings(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Names of the settings that differ (``models.<stage>.<field>`` inside model specs)."""
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(f"{key}.{sub}" for sub in changed_settings(a, b))
        else:
            out.append(key)
    return out
