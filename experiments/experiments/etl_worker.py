"""Run one ETL configuration in its own process and write what it cost: ``python -m
experiments.etl_worker SPEC.json RESULT.json``.

dual_pipeline and model_ablation run every pipeline variant through this worker so that each
one pays its own imports and model loads and has its own peak memory (``ru_maxrss`` of a process
only grows), as separate pipelines would in practice.

SPEC: ``{"etl": {EtlConfig fields}, "models": {model role: ModelSpec fields}, "decoding":
"constrained" | "free", "seed": int | null}``. RESULT: exit code, the ETL report, the registry's
model loads and prefill batches, free-decoding parse counts, peak RSS and wall seconds.
"""

from __future__ import annotations

import json
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from liquid_shared.cli_options import EXIT_OK, EXIT_PARTIAL


class WorkerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    etl: dict[str, Any] = Field(default_factory=dict)
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)
    decoding: Literal["constrained", "free"] = "constrained"
    seed: int | None = None


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its children: unlike wall time, it does not
    grow when other processes compete for the cores."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def build_provider(spec: WorkerSpec, profile: str):
    """A ``ModelProvider`` (model role -> pydantic-ai model) with the spec's overrides."""
    from experiments.free_decoding import FreeDecodingModel
    from liquid_shared.models import LiquidModel, ModelSpec, get_profile

    base = get_profile(profile)
    cache: dict[str, Any] = {}
    free_models: list[FreeDecodingModel] = []

    def provide(stage: str):
        if stage not in cache:
            model_spec = base.spec_for(stage)
            if stage in spec.models:  # the variant's fields over the profile's spec for this stage
                model_spec = ModelSpec(**{**model_spec.model_dump(), **spec.models[stage]})
            if spec.seed is not None:
                model_spec = model_spec.model_copy(update={"seed": spec.seed})
            model = LiquidModel(model_spec)
            if spec.decoding == "free":
                model = FreeDecodingModel(model)
                free_models.append(model)
            cache[stage] = model
        return cache[stage]

    return provide, free_models


def registry_usage(registry: Any) -> dict[str, Any]:
    """Model loads (per model name), generate batches and model requests of a ``ModelRegistry``.

    The registry keeps one loaded model per distinct ``ModelSpec``, so two specs of the same model
    (e.g. a variant's QA spec with other decoding settings next to the judge's) are two loads with
    their own counters: everything is summed over specs, never keyed by the model name alone.
    Batches and requests are the ``calls`` / ``rows`` counters of each loaded model (the registry
    has no accessor for them); a model the registry unloaded to make room takes its counts along.
    """
    loads: dict[str, int] = {}
    for model_spec, n in registry.load_counts.items():
        loads[model_spec.model] = loads.get(model_spec.model, 0) + n
    backends = [registry.get(s) for s in registry.loaded_specs()]
    return {
        "model_loads": loads,
        "registry_peak_weight_bytes": int(registry.peak_weight_bytes),
        "prefill_batches": sum(b.calls for b in backends),
        "model_requests": sum(b.rows for b in backends),
    }


def run_spec(spec: WorkerSpec) -> dict[str, Any]:
    from etl_pipeline import EtlConfig
    from etl_pipeline import run as run_etl
    from liquid_shared import get_registry

    start = time.perf_counter()
    config = EtlConfig(**spec.etl)
    provider, free_models = build_provider(spec, config.profile)
    result = run_etl(config, model_provider=provider, track=False)
    free: dict[str, dict[str, int]] = {}
    for model in free_models:
        for name, counts in model.stats().items():
            slot = free.setdefault(name, {"replies": 0, "json_objects": 0})
            slot["replies"] += counts["replies"]
            slot["json_objects"] += counts["json_objects"]
    return {
        "exit_code": result.exit_code,
        "status": result.status,
        "message": result.message,
        "output_dir": str(result.output_dir),
        "report": result.report,
        **registry_usage(get_registry()),
        "free_decoding": free,
        "peak_rss_bytes": _peak_rss_bytes(),
        "cpu_seconds": _cpu_seconds(),
        "worker_seconds": time.perf_counter() - start,
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    usage = ("usage: python -m experiments.etl_worker SPEC.json RESULT.json\n"
             "Runs one ETL job described by SPEC.json (a WorkerSpec) in its own process and writes its result "
             "to RESULT.json (the experiments start it; exit 0 = done or partial, 1 = failed, 2 = usage).")
    if args in (["--help"], ["-h"]):
        print(usage)
        return 0
    if len(args) != 2:
        print(usage, file=sys.stderr)
        return 2
    spec_path, result_path = Path(args[0]), Path(args[1])
    try:
        spec = WorkerSpec.model_validate_json(spec_path.read_text(encoding="utf-8"))
        out = run_spec(spec)
    except Exception as exc:
        out = {"exit_code": 1, "status": "fatal", "message": f"{type(exc).__name__}: {exc}",
               "traceback": traceback.format_exc(), "peak_rss_bytes": _peak_rss_bytes()}
    result_path.write_text(json.dumps(out, indent=2, default=str), encoding="utf-8")
    return 0 if out["exit_code"] in (EXIT_OK, EXIT_PARTIAL) else 1


if __name__ == "__main__":
    sys.exit(main())
