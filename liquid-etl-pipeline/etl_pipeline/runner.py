"""Run the ETL over a folder: discover, skip what is done, process the rest, merge, report.

``run(config)`` is the synchronous entry point (the CLI calls it); ``run_async`` is the
async core for callers that already have an event loop.

Resume and incremental runs rest on the shards (see ``shards``): a document whose shard is done
under the same settings fingerprint is skipped; a changed file has a new ``doc_id`` and is
processed again, and shards of documents no longer in the input are removed. The top-level
files are then rebuilt from the shards (``merge``), so a run killed at any point and started
again ends with exactly the records of an uninterrupted run: none lost, none duplicated.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl_pipeline.config import EtlConfig
from etl_pipeline.graph import (
    DocOutcome,
    DocState,
    Events,
    PipelineDeps,
    build_document_graph,
    write_failure,
)
from etl_pipeline.llm_stages import PROFILE_STAGE, ChunkStages, ModelProvider, registry_models
from etl_pipeline.loaders import SUPPORTED_SUFFIXES, SourceItem, discover_sources
from etl_pipeline.merge import merge_run, write_json_atomic
from etl_pipeline.quality import check_run
from etl_pipeline.shards import ShardStore
from etl_pipeline.tmd import TmdAssigner
from etl_pipeline.token_counter import default_token_counter

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_PARTIAL = 2


class FatalError(RuntimeError):
    """The run cannot go on (bad input folder, a model that cannot load)."""


@dataclass
class RunResult:
    exit_code: int
    output_dir: Path
    report: dict[str, Any] = field(default_factory=dict)
    outcomes: list[DocOutcome] = field(default_factory=list)
    message: str = ""

    @property
    def status(self) -> str:
        return {EXIT_OK: "ok", EXIT_PARTIAL: "partial", EXIT_FATAL: "fatal"}[self.exit_code]


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def select_sources(config: EtlConfig) -> tuple[list[SourceItem], list[SourceItem]]:
    """``(all discovered, selected)``; raises ``FatalError`` for a bad or empty input folder."""
    try:
        every = discover_sources(config.input_dir)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise FatalError(str(exc)) from None
    if not every:
        raise FatalError(
            f"no documents found in {config.input_dir} (looked for {', '.join(SUPPORTED_SUFFIXES)} files, recursively)"
        )
    return every, every[: config.limit] if config.limit else every


def _make_encoder():
    from liquid_shared.embeddings import get_embedder

    embedder = get_embedder()
    lock = asyncio.Lock()

    async def encode(texts: list[str]):
        async with lock:
            return await asyncio.to_thread(embedder.encode, texts)

    return embedder, encode


async def run_async(
    config: EtlConfig,
    *,
    model_provider: ModelProvider | None = None,
    events: Events | None = None,
    on_documents: Any = None,
) -> RunResult:
    """Process the selected documents and merge the run folder (async core of ``run``).

    ``model_provider`` replaces the registry's models (tests pass a ``FunctionModel``);
    ``on_documents(total, skipped)`` is called once the work list is known.
    """
    started_wall = time.time()
    t0 = time.perf_counter()
    every, selected = select_sources(config)
    store = ShardStore(config.output_dir)
    store.remove_temporaries()
    store.prune({it.doc_id for it in every})
    fingerprint = config.fingerprint()
    todo: list[SourceItem] = []
    skipped = 0
    for item in selected:
        record = store.read_record(item.doc_id)
        if record is not None and record.status == "done" and record.fingerprint == fingerprint:
            skipped += 1
        else:
            todo.append(item)
    if on_documents is not None:
        on_documents(len(selected), skipped)

    events = events or Events()
    embedder, encode = _make_encoder()
    provider = model_provider or registry_models(config.profile)
    stages = ChunkStages(config, provider, concurrency=config.concurrency, encode=encode, on_call=events.llm_call)
    deps = PipelineDeps(
        config=config,
        stages=stages,
        encode=encode,
        tmd=TmdAssigner(embedder.encode),
        shards=store,
        counter=default_token_counter(),
        events=events,
    )
    graph = build_document_graph()
    doc_semaphore = asyncio.Semaphore(config.effective_docs_in_flight)

    async def process(item: SourceItem) -> DocOutcome:
        async with doc_semaphore:
            state = DocState(item=item)
            try:
                return await graph.run(state=state, deps=deps, inputs=item)
            except Exception as exc:
                if _fatal_model_error(exc):
                    raise
                # a bug or an unforeseen input: this document fails, the run goes on
                log.exception("document %s failed", item.source)
                return await write_failure(state, deps, f"internal error {type(exc).__name__}: {exc}")

    tasks = [asyncio.create_task(process(item), name=f"etl:{item.source}") for item in todo]
    outcomes: list[DocOutcome] = []
    try:
        for task in asyncio.as_completed(tasks):
            outcome = await task
            outcomes.append(outcome)
            events.document_done(outcome)
    except BaseException as exc:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if isinstance(exc, Exception) and _fatal_model_error(exc):
            raise FatalError(f"the model could not be used: {exc}") from exc
        raise
    processing_seconds = time.perf_counter() - t0

    this_run = {
        "selected": len(selected),
        "processed": len(todo),
        "skipped_unchanged": skipped,
        "processing_seconds": round(processing_seconds, 3),
        "chunks_processed": sum(o.n_chunks for o in outcomes),
        "documents_done": sum(1 for o in outcomes if o.status == "done"),
        "documents_failed": sum(1 for o in outcomes if o.status == "failed"),
    }
    minutes = processing_seconds / 60 if processing_seconds > 0 else float("nan")
    this_run["chunks_per_minute"] = round(this_run["chunks_processed"] / minutes, 2) if todo else 0.0
    this_run["documents_per_minute"] = round(len(todo) / minutes, 2) if todo else 0.0
    report = await asyncio.to_thread(
        merge_run,
        config,
        selected,
        store,
        this_run=this_run,
        started_at=started_wall,
        memory=_memory_report(config, model_provider is None),
        dim=int(embedder.dim),
    )
    try:
        quality = await asyncio.to_thread(check_run, config.output_dir, max_tokens=config.max_chunk_tokens)
        report["quality"] = {
            "neighbour_cosine_mean": quality["sequential_coherence"]["neighbours"].get("mean"),
            "lift_over_cross_document": quality["sequential_coherence"].get("lift"),
            "distinct_tmd_codes": quality["tmd"]["distinct_codes"],
        }
    except Exception as exc:  # the checks are advisory: a failure is reported, not fatal
        report["quality"] = {"error": f"{type(exc).__name__}: {exc}"}
    write_json_atomic(config.output_dir / "report.json", report)
    failed = report["documents"]["failed"] + report["documents"]["missing"]
    exit_code = EXIT_PARTIAL if failed else EXIT_OK
    return RunResult(exit_code=exit_code, output_dir=config.output_dir, report=report, outcomes=outcomes)


def _fatal_model_error(exc: BaseException) -> bool:
    try:
        from liquid_shared.models.errors import ModelLoadError, OverBudgetError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, ModelLoadError | OverBudgetError)


def _memory_report(config: EtlConfig, uses_registry: bool) -> dict[str, Any]:
    """Peak RSS, what the registry loaded, and the naive sum (one model copy per stage)."""
    out: dict[str, Any] = {"peak_rss_bytes": peak_rss_bytes()}
    if not uses_registry:
        return out
    from liquid_shared.models import get_profile, get_registry

    registry = get_registry()
    profile = get_profile(config.profile)
    weights: dict[str, int] = {}
    for spec in registry.loaded_specs():
        weights[spec.model] = int(registry.get(spec).weight_bytes)
    per_stage = {}
    for stage, profile_stage in PROFILE_STAGE.items():
        if stage in config.stages or (stage == "boundaries" and config.llm_boundaries):
            per_stage[stage] = profile.spec_for(profile_stage).model
    out.update(
        {
            "model_loads": {spec.model: n for spec, n in registry.load_counts.items()},
            "loaded_weight_bytes": weights,
            "registry_peak_weight_bytes": int(registry.peak_weight_bytes),
            "stage_models": per_stage,
            "sum_of_stage_model_bytes": sum(weights.get(model, 0) for model in per_stage.values()),
        }
    )
    return out


def run(
    config: EtlConfig,
    *,
    model_provider: ModelProvider | None = None,
    events: Events | None = None,
    on_documents: Any = None,
    track: bool = True,
) -> RunResult:
    """Run the ETL synchronously; never raises for bad input (see ``RunResult.exit_code``)."""
    try:
        result = asyncio.run(
            run_async(config, model_provider=model_provider, events=events, on_documents=on_documents)
        )
    except FatalError as exc:
        return RunResult(exit_code=EXIT_FATAL, output_dir=config.output_dir, message=str(exc))
    if track:
        result.report["mlflow"] = log_to_mlflow(config, result)
        write_json_atomic(config.output_dir / "report.json", result.report)
    return result


def log_to_mlflow(config: EtlConfig, result: RunResult) -> dict[str, Any]:
    """Log the run's settings, counts and report to MLflow; a tracking failure is only reported."""
    try:
        from liquid_shared.tracking import start_run

        report = result.report
        params = config.model_dump(mode="json")
        with start_run(
            "etl",
            run_name=config.output_dir.name,
            params=params,
            tags={"etl.fingerprint": config.fingerprint(), "etl.status": result.status},
            local_dir=config.output_dir / "tracking",
        ) as run:
            metrics = {f"count.{k}": v for k, v in report["counts"].items() if isinstance(v, int | float)}
            metrics.update({f"this_run.{k}": v for k, v in report["this_run"].items() if isinstance(v, int | float)})
            metrics["memory.peak_rss_bytes"] = report["memory"]["peak_rss_bytes"]
            metrics["tokens.input"] = report["tokens"]["input"]
            metrics["tokens.output"] = report["tokens"]["output"]
            metrics["exit_code"] = result.exit_code
            run.log_metrics(metrics)
            run.log_dict(report, "report.json")
            run.log_artifact(config.output_dir / "manifest.json")
            return {"ok": bool(run.mlflow_ok), "run_id": run.run_id, "tracking_uri": run.tracking_uri}
    except Exception as exc:  # tracking must never fail a finished run
        log.warning("MLflow logging failed: %s", exc)
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
