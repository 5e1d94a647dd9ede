"""Run the ETL over a folder: discover, skip what is done, process the rest, merge, report.

``run(config)`` is the synchronous entry point (the CLI calls it); ``run_async`` is the
async core for callers that already have an event loop.

Resume and incremental runs rest on the shards (see ``shards``): a document whose shard is done
under the same settings fingerprint is skipped; a changed file has a new ``doc_id`` and is
processed again, and shards of documents no longer in the input are removed. The top-level
files are then rebuilt from the shards (``merge``), so a run killed at any point and started
again ends with exactly the records of an uninterrupted run: none lost, none duplicated.

Before any work: the run folder's lock is taken (a second run on it stops with a message), the
folder is checked to belong to this input folder (``run_folder``), and every shard that would
be reused is read back whole; a damaged one is moved to ``quarantine/`` and its document done
again. A document re-done because a setting changed is counted per setting, so the report (and
the CLI) can say *which* setting changed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl_pipeline.config import EtlConfig, changed_settings
from etl_pipeline.dataset_card import attach_dataset
from etl_pipeline.graph import (
    DocOutcome,
    DocState,
    Events,
    PipelineDeps,
    build_document_graph,
    write_failure,
)
from etl_pipeline.llm_stages import STAGE_ROLE, ChunkStages, ModelProvider, registry_models
from etl_pipeline.loaders import SUPPORTED_SUFFIXES, Discovery, SourceItem, discover
from etl_pipeline.merge import merge_run
from etl_pipeline.quality import check_run
from etl_pipeline.run_folder import RunFolderError, check_input_folder, hold_output_lock
from etl_pipeline.shards import ShardDamaged, ShardStore
from etl_pipeline.tmd import TmdAssigner
from etl_pipeline.token_counter import default_token_counter
from liquid_shared.atomic import write_json_atomic
from liquid_shared.cli_options import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL

log = logging.getLogger(__name__)

# The stack's exit codes (liquid_shared.cli_options): 0 done, 1 fatal, 3 partial (2 is click's usage error).
EXIT_OK, EXIT_FATAL, EXIT_PARTIAL = EXIT_OK, EXIT_FAILED, EXIT_PARTIAL


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
    found = discover_input(config)
    return found.items, found.items[: config.limit] if config.limit else found.items


def discover_input(config: EtlConfig) -> Discovery:
    """Everything found in the input folder; ``FatalError`` for a bad folder or no documents."""
    try:
        found = discover(config.input_dir, jsonl_id_field=config.jsonl_id_field)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise FatalError(str(exc)) from None
    if not found.items:
        skipped = f"; skipped: {', '.join(f'{s.source} ({s.reason})' for s in found.skipped[:5])}" if found.skipped else ""
        raise FatalError(
            f"no documents found in {config.input_dir} (looked for {', '.join(SUPPORTED_SUFFIXES)} files, recursively){skipped}"
        )
    return found


@dataclass
class WorkPlan:
    """What a run does: the documents to process, and why the others are skipped or redone."""

    todo: list[SourceItem] = field(default_factory=list)
    skipped: int = 0
    repaired: list[dict[str, Any]] = field(default_factory=list)
    changed: Counter[str] = field(default_factory=Counter)
    redone_for_settings: int = 0

    def settings_note(self) -> dict[str, Any] | None:
        if not self.redone_for_settings:
            return None
        return {"documents": self.redone_for_settings, "settings": dict(sorted(self.changed.items()))}


def plan_work(config: EtlConfig, selected: list[SourceItem], store: ShardStore) -> WorkPlan:
    """Skip documents whose shard is done, intact and made under the same settings; redo the rest."""
    plan = WorkPlan()
    fingerprint = config.fingerprint()
    settings = config.fingerprint_settings()
    for item in selected:
        try:
            record = store.check_record(item.doc_id)
            if record is not None and record.status == "done" and record.fingerprint == fingerprint:
                store.load_done(record)
                plan.skipped += 1
                continue
        except ShardDamaged as exc:
            log.warning("shard of %s is damaged (%s): moved aside, the document is done again", item.source, exc.reason)
            plan.repaired.append(store.quarantine(item.doc_id, item.source, exc.reason))
            record = None
        if record is not None and record.fingerprint != fingerprint:
            plan.redone_for_settings += 1
            names = changed_settings(record.settings, settings) if record.settings else ["settings of an older ETL version"]
            plan.changed.update(names or ["fingerprint"])
        plan.todo.append(item)
    return plan


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
    track: bool = True,
    experiment: str = "etl",
) -> RunResult:
    """Run the ETL in the running event loop: process the selected documents, merge the run
    folder and (``track``) log it to MLflow under ``experiment``. Never raises for bad input (see ``RunResult.exit_code``).

    ``model_provider`` replaces the registry's models (tests pass a ``FunctionModel``);
    ``on_documents(total, skipped)`` is called once the work list is known.
    """
    try:
        with hold_output_lock(config.output_dir):
            result = await _run_locked(config, model_provider=model_provider, events=events, on_documents=on_documents)
            if track:  # MLflow's client blocks: off the event loop
                result.report["mlflow"] = await asyncio.to_thread(log_to_mlflow, config, result, experiment)
                write_json_atomic(config.output_dir / "report.json", result.report)
    except (FatalError, RunFolderError) as exc:
        return RunResult(exit_code=EXIT_FATAL, output_dir=config.output_dir, message=str(exc))
    return result


async def _run_locked(
    config: EtlConfig, *, model_provider: ModelProvider | None, events: Events | None, on_documents: Any
) -> RunResult:
    started_wall = time.time()
    t0 = time.perf_counter()
    found, selected, replaced_input, store, plan = prepare_run(config)
    todo, skipped = plan.todo, plan.skipped
    if plan.redone_for_settings:
        log.warning(
            "%d document(s) are done again because settings changed: %s",
            plan.redone_for_settings,
            ", ".join(sorted(plan.changed)),
        )
    if on_documents is not None:
        on_documents(len(selected), skipped)

    events = events or Events()
    embedder, encode = _make_encoder()
    provider = model_provider or _registry_provider(config)
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
        "most_chunks_in_flight_per_document": max((o.most_in_flight for o in outcomes), default=0),
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
        run_notes=_run_notes(found, plan, replaced_input),
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
    await asyncio.to_thread(attach_dataset, config.output_dir, report)  # parquet + README.md; never fails the run
    write_json_atomic(config.output_dir / "report.json", report)
    failed = report["documents"]["failed"] + report["documents"]["missing"] + report["documents"]["refused"]
    exit_code = EXIT_PARTIAL if failed else EXIT_OK
    return RunResult(exit_code=exit_code, output_dir=config.output_dir, report=report, outcomes=outcomes)


def prepare_run(config: EtlConfig) -> tuple[Discovery, list[SourceItem], str | None, ShardStore, WorkPlan]:
    """What every run does first, local or on Ray (under the run folder's lock): discover the input,
    select (``limit``), check the folder's input binding, clear temporaries and shards of vanished
    documents, and plan which documents to (re)do. Returns ``(found, selected, replaced_input, store, plan)``.
    An unmet ``require_precision`` is fatal here, before any work."""
    from etl_pipeline.trust import PrecisionRequirementError, check_required_precision

    try:
        check_required_precision(config)
    except PrecisionRequirementError as exc:
        raise FatalError(str(exc)) from None
    found = discover_input(config)
    every = found.items
    selected = every[: config.limit] if config.limit else every
    replaced_input = check_input_folder(config.output_dir, config.input_dir, force=config.force)
    store = ShardStore(config.output_dir)
    store.remove_temporaries()
    store.prune({it.doc_id for it in every})
    return found, selected, replaced_input, store, plan_work(config, selected, store)


def _run_notes(found: Discovery, plan: WorkPlan, replaced_input: str | None) -> dict[str, Any]:
    notes: dict[str, Any] = {
        "skipped_sources": [{"source": s.source, "reason": s.reason, "refused": s.refused} for s in found.skipped],
        "errors": [{"doc_id": None, "source": s.source, "stage": "discover", "error": s.reason} for s in found.skipped if s.refused],
        "repaired_shards": plan.repaired,
        "settings_changed": plan.settings_note(),
    }
    if replaced_input is not None:
        notes["replaced_input_dir"] = replaced_input
    return notes


def _registry_provider(config: EtlConfig) -> ModelProvider:
    """The registry's model for each model role, with the run's per-stage overrides applied."""
    if not config.role_models and config.prefix_cache_mb is None:
        return registry_models(config.profile)
    from liquid_shared.models.pydantic_model import LiquidModel

    specs = config.role_specs()
    cache: dict[str, Any] = {}

    def provide(role: str):
        if role not in cache:
            cache[role] = LiquidModel(specs[role])
        return cache[role]

    return provide


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
    from liquid_shared.models import get_registry

    registry = get_registry()
    specs = config.role_specs()
    weights: dict[str, int] = {}
    for spec in registry.loaded_specs():
        weights[spec.model] = int(registry.get(spec).weight_bytes)
    per_stage = {}
    for stage, role in STAGE_ROLE.items():
        if stage in config.stages or (stage == "boundaries" and config.llm_boundaries):
            per_stage[stage] = specs[role].model
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
    experiment: str = "etl",
) -> RunResult:
    """Run the ETL and wait for it; never raises for bad input (see ``RunResult.exit_code``).

    Works in a script and inside a running event loop (a notebook, an async app): there the job
    runs on its own event loop in a worker thread, and this call blocks until it is done. In async
    code, ``await run_async(...)`` is the non-blocking form.
    """
    job = run_async(config, model_provider=model_provider, events=events, on_documents=on_documents, track=track,
                    experiment=experiment)
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no loop here: the usual script
        return asyncio.run(job)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="etl-run") as pool:
        return pool.submit(asyncio.run, job).result()


def log_to_mlflow(config: EtlConfig, result: RunResult, experiment: str = "etl") -> dict[str, Any]:
    """Log the run's settings, counts and report to MLflow; a tracking failure is only reported."""
    try:
        from liquid_shared.tracking import start_run

        report = result.report
        params = config.model_dump(mode="json")
        with start_run(
            experiment,
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
