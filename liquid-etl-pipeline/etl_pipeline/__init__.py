"""The ETL pipeline: documents to chunks, metadata, summaries, QA pairs, fine-tuning data and an index.

    from etl_pipeline import EtlConfig, run
    result = run(EtlConfig(input_dir="data/samples", output_dir="data/runs/demo"))
    result.exit_code, result.report["counts"]

Command line: ``python -m etl_pipeline.run_etl --help``; quality checks of a finished run:
``python -m etl_pipeline.quality RUN_DIR``; how many kept QA pairs are right, on a SQuAD file:
``python -m etl_pipeline.calibrate --input SQUAD.json``; a run for other tools (BEIR, DPO,
sentence-transformers pairs, Ragas): ``python -m etl_pipeline.export RUN --format beir``. Every run
folder is also a Hugging Face dataset (``README.md`` + ``parquet/``). See docs/etl_pipeline.md.

Names are imported lazily, so ``import etl_pipeline`` stays cheap and ``python -m`` on a
submodule does not import it twice.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EtlConfig": "etl_pipeline.config",
    "LLM_STAGES": "etl_pipeline.config",
    "DEFAULT_INPUT_DIR": "etl_pipeline.config",
    "run": "etl_pipeline.runner",
    "run_async": "etl_pipeline.runner",
    "RunResult": "etl_pipeline.runner",
    "EXIT_OK": "etl_pipeline.runner",
    "EXIT_PARTIAL": "etl_pipeline.runner",
    "EXIT_FATAL": "etl_pipeline.runner",
    "check_run": "etl_pipeline.quality",
    "SourceItem": "etl_pipeline.loaders",
    "LoadError": "etl_pipeline.loaders",
    "SUPPORTED_SUFFIXES": "etl_pipeline.loaders",
    "discover_sources": "etl_pipeline.loaders",
    "load_document": "etl_pipeline.loaders",
    "build_chunks": "etl_pipeline.chunking",
    "segment_document": "etl_pipeline.chunking",
    "boundary_report": "etl_pipeline.chunking",
    "ChunkStages": "etl_pipeline.llm_stages",
    "STAGE_ROLE": "etl_pipeline.llm_stages",
    "registry_models": "etl_pipeline.llm_stages",
    "build_document_graph": "etl_pipeline.graph",
    "DocOutcome": "etl_pipeline.graph",
    "Events": "etl_pipeline.graph",
    "TmdAssigner": "etl_pipeline.tmd",
    "TmdCode": "etl_pipeline.tmd",
    "DOMAINS": "etl_pipeline.tmd",
    "TASKS": "etl_pipeline.tmd",
    "MODIFIERS": "etl_pipeline.tmd",
    "tmd_distribution": "etl_pipeline.tmd",
    "grounding_score": "etl_pipeline.grounding",
    "near_duplicate_mask": "etl_pipeline.dedup",
    "RichEvents": "etl_pipeline.progress",
    "run_on_ray": "etl_pipeline.ray_runner",
    "calibrate": "etl_pipeline.calibrate",
    "trust_statement": "etl_pipeline.trust",
    "PRECISION_CHECKS": "etl_pipeline.precision_checks",
    "write_dataset": "etl_pipeline.dataset_card",
    "write_export": "etl_pipeline.export",
    "load_run": "etl_pipeline.export",
    "ExportFormat": "etl_pipeline.export",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'etl_pipeline' has no attribute {name!r}")
