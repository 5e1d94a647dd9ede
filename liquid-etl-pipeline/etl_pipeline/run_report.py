"""``report.json`` of a run: counts per output and stage, timings, tokens, memory, errors.

Built from the merged shards (``merge.collect_shards``) plus what only the runner knows: this
run's timings, peak memory, and its ``run_notes`` (sources skipped at discovery, shards found
damaged and re-done, which setting changed since the shards were written).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from etl_pipeline.chunking import boundary_report
from etl_pipeline.config import EtlConfig
from etl_pipeline.precision_checks import reason_code

if TYPE_CHECKING:
    from etl_pipeline.merge import MergedRun


def build_report(
    config: EtlConfig,
    m: MergedRun,
    *,
    n_vectors: int,
    this_run: dict[str, Any],
    started_at: float,
    memory: dict[str, Any],
    run_notes: dict[str, Any] | None = None,
    trust: dict[str, Any] | None = None,
) -> dict[str, Any]:
    notes = dict(run_notes or {})
    errors = list(notes.pop("errors", [])) + m.errors
    repaired = list(notes.pop("repaired_shards", [])) + m.damaged
    valid = sum(1 for v in m.validations if v.valid)
    counts = {
        "documents_selected": m.doc_counts["selected"],
        "documents_done": m.doc_counts["done"],
        "documents_failed": m.doc_counts["failed"],
        "chunks": len(m.chunks),
        "metadata": len(m.metadata),
        "summaries": len(m.summaries),
        "qa_generated": m.qa_generated,
        "qa_duplicates_removed": m.qa_duplicates_removed,
        "qa_pairs": len(m.qa_pairs),
        "qa_valid": valid,
        "qa_invalid": len(m.validations) - valid,
        "ft_samples": len(m.samples),
        "index_vectors": n_vectors,
    }
    documents = {**m.doc_counts, "refused": sum(1 for e in errors if e.get("stage") == "discover")}
    rejections: Counter[str] = Counter()
    for v in m.validations:
        rejections.update({reason_code(r) for r in v.reasons})
    validation = {"profile": config.validation_profile, "qa_mode": config.qa_mode,
                  "rejected_by_check": dict(sorted(rejections.items()))}
    warnings = list(m.warnings)
    if trust is not None and not trust["verified"]:
        warnings.append({"doc_id": None, "source": None, "warning": trust["message"]})
    partial = documents["failed"] or documents["missing"] or documents["refused"]
    return {
        "run": {
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started_at)),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "wall_seconds": round(time.time() - started_at, 3),
            "status": "partial" if partial else "ok",
            "fingerprint": config.fingerprint(),
            "settings": config.fingerprint_settings(),
            "config": config.model_dump(mode="json"),
        },
        "documents": documents,
        "counts": counts,
        "stages": {name: vars(st) for name, st in sorted(m.stage_totals.items())},
        "tokens": {
            "input": sum(st.input_tokens for st in m.stage_totals.values()),
            "output": sum(st.output_tokens for st in m.stage_totals.values()),
        },
        "this_run": this_run,
        "memory": memory,
        "chunk_boundaries": boundary_report(m.chunks, max_tokens=config.max_chunk_tokens),
        "errors": errors,
        "validation": validation,
        "trust": trust,
        "warnings": warnings,
        "repaired_shards": repaired,
        **notes,
    }
