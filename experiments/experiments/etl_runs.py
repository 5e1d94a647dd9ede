"""Run ETL variants in worker processes (``experiments.etl_worker``) and read what they cost.

Each call starts a fresh ``python -m experiments.etl_worker`` process with its own, emptied
output folder (so the ETL never skips a document as already done), and measures the wall time of
the whole process: imports, model loads, the pipeline, writing the outputs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from experiments.etl_worker import WorkerSpec


class EtlRunError(RuntimeError):
    """An ETL variant failed; the message names the variant and the cause."""


def run_in_worker(label: str, spec: WorkerSpec, folder: Path, timeout: float | None = None) -> dict[str, Any]:
    """Run ``spec`` into ``folder`` in a new process; returns the worker's result plus ``wall_seconds``."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    spec = spec.model_copy(update={"etl": {**spec.etl, "output_dir": str(folder)}})
    spec_path = folder.parent / f"{folder.name}.spec.json"
    result_path = folder.parent / f"{folder.name}.result.json"
    spec_path.write_text(spec.model_dump_json(indent=2), encoding="utf-8")
    result_path.unlink(missing_ok=True)
    command = [sys.executable, "-m", "experiments.etl_worker", str(spec_path), str(result_path)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
    except subprocess.TimeoutExpired:
        raise EtlRunError(f"{label}: the ETL did not finish within {timeout} s") from None
    wall = time.perf_counter() - start
    if not result_path.is_file():
        tail = (proc.stderr or "").strip().splitlines()[-5:]
        raise EtlRunError(f"{label}: the ETL worker exited with code {proc.returncode} without a result: "
                          + " | ".join(tail))
    result = json.loads(result_path.read_text(encoding="utf-8"))
    if result.get("exit_code") == 1:
        raise EtlRunError(f"{label}: the ETL failed: {result.get('message') or 'fatal error'}")
    result["wall_seconds"] = wall
    result["label"] = label
    return result


def cost_metrics(result: dict[str, Any]) -> dict[str, float]:
    """Time, model calls, tokens and memory of one worker run."""
    report = result.get("report") or {}
    stages = report.get("stages", {})
    tokens = report.get("tokens", {})
    return {
        "wall_seconds": float(result["wall_seconds"]),
        "processing_seconds": float(report.get("this_run", {}).get("processing_seconds", float("nan"))),
        "cpu_seconds": float(result.get("cpu_seconds", float("nan"))),
        "stage_calls": float(sum(s.get("calls", 0) for s in stages.values())),
        "model_requests": float(result.get("model_requests", 0)),
        "prefill_batches": float(result.get("prefill_batches", 0)),
        "input_tokens": float(tokens.get("input", 0)),
        "output_tokens": float(tokens.get("output", 0)),
        "tokens": float(tokens.get("input", 0) + tokens.get("output", 0)),
        "model_loads": float(sum(result.get("model_loads", {}).values())),
        "peak_rss_mb": result.get("peak_rss_bytes", 0) / 2**20,
        "documents_failed": float(report.get("documents", {}).get("failed", 0)),
    }
