"""The ETL with documents distributed over Ray workers (``run_etl --ray ADDRESS``).

The unit of work stays the document. The driver (this process) discovers the input, skips what
is done, and hands documents to ``DocumentWorker`` actors, at most ``docs_in_flight`` per
worker (back-pressure: a worker gets its next document when one of its own finishes). Each
worker is one process that builds the same per-document graph as the single-process runner
(``etl_pipeline.graph``) with its own models from the shared registry, so one model load per
worker (or, with a remote profile, no weights at all: every stage goes to the shared engine with
``concurrency`` requests in flight per stage). A worker writes each document's shard into the
run folder with the usual temp-then-rename rule (``etl_pipeline.shards``); the driver then
merges the shards exactly as a local run does, so the top-level files are byte-identical to a
single-process run with the same settings (greedy fp32 decoding is batch-invariant here).

The run folder (and the input folder) must be a path every worker sees: local disk for a
one-machine cluster, a shared filesystem (NFS, Lustre, a mounted bucket with atomic rename)
for several machines.

Faults: a worker killed mid-document (``ray.kill`` on its actor, SIGKILL to its process) loses
that document's in-flight work only: its temporary shard folder is never renamed, Ray restarts
the actor (``max_restarts``) and the driver resubmits the document (at most
``MAX_ATTEMPTS`` times). A worker first checks whether the document's shard is already done
under the run's fingerprint, so a resubmitted document is never written twice. A driver killed
mid-run is resumed by running the same command again (finished shards are skipped).
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console

from etl_pipeline.config import EtlConfig
from etl_pipeline.graph import DocState, PipelineDeps, build_document_graph, write_failure
from etl_pipeline.loaders import SourceItem
from etl_pipeline.progress import RichEvents
from etl_pipeline.run_folder import RunFolderError, hold_output_lock
from etl_pipeline.runner import (
    EXIT_FATAL,
    EXIT_OK,
    EXIT_PARTIAL,
    FatalError,
    RunResult,
    _fatal_model_error,
    _make_encoder,
    _registry_provider,
    _run_notes,
    log_to_mlflow,
    peak_rss_bytes,
    prepare_run,
)
from etl_pipeline.shards import ShardStore

MAX_ATTEMPTS = 3
"""A document is submitted at most this many times (its first try plus retries after a lost worker)."""

ACTOR_MAX_RESTARTS = 3
"""Ray restarts a killed worker this many times (each restart loads its model again)."""

RESTART_WAIT_SECONDS = 600.0
"""How long the driver waits for Ray to bring a lost worker back before counting it dead."""

INSTALL_HINT = "Ray is not installed: pip install 'liquid-etl-pipeline[ray]'"


# The worker ----------------------------------------------------------------------------------


class DocumentWorker:
    """One Ray actor: the per-document graph with its own models; ``process`` one document at a time
    per call, several calls at once (an async actor: the calls share one event loop, so the
    registry's batcher decodes requests of all its documents together)."""

    def __init__(self, config: EtlConfig, env: dict[str, str], threads: int):
        os.environ.update(env)  # LIQUID_* settings of the driver (dtype, cache folders, profiles)
        import torch

        torch.set_num_threads(max(1, threads))
        self.config = config
        self.fingerprint = config.fingerprint()
        self.store = ShardStore(config.output_dir)
        self._deps: PipelineDeps | None = None
        self._graph = None
        self.done = 0
        self.busy_seconds = 0.0
        self.started = time.time()

    def _build(self) -> None:
        from etl_pipeline.llm_stages import ChunkStages
        from etl_pipeline.tmd import TmdAssigner
        from etl_pipeline.token_counter import default_token_counter

        embedder, encode = _make_encoder()
        stages = ChunkStages(self.config, _registry_provider(self.config), concurrency=self.config.concurrency, encode=encode)
        self._deps = PipelineDeps(
            config=self.config, stages=stages, encode=encode, tmd=TmdAssigner(embedder.encode), shards=self.store,
            counter=default_token_counter(),
        )
        self._graph = build_document_graph()

    async def info(self) -> dict[str, Any]:
        import platform

        return {"pid": os.getpid(), "host": platform.node()}

    async def process(self, item: SourceItem) -> dict[str, Any]:
        """Run one document's graph and write its shard; a done shard (same fingerprint) is kept."""
        t0 = time.perf_counter()
        record = self.store.read_record(item.doc_id)
        if record is not None and record.status == "done" and record.fingerprint == self.fingerprint:
            return {"doc_id": item.doc_id, "source": item.source, "status": "done", "reused": True, "pid": os.getpid(), "seconds": 0.0}
        if self._deps is None:
            self._build()
        state = DocState(item=item)
        try:
            outcome = await self._graph.run(state=state, deps=self._deps, inputs=item)
        except Exception as exc:
            if _fatal_model_error(exc):
                return {"doc_id": item.doc_id, "source": item.source, "status": "fatal", "error": f"{type(exc).__name__}: {exc}"}
            outcome = await write_failure(state, self._deps, f"internal error {type(exc).__name__}: {exc}")
        seconds = time.perf_counter() - t0
        self.done += 1
        self.busy_seconds += seconds
        return {**asdict(outcome), "reused": False, "pid": os.getpid(), "seconds": round(seconds, 3)}

    async def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pid": os.getpid(), "documents": self.done, "busy_seconds": round(self.busy_seconds, 3),
                               "peak_rss_bytes": peak_rss_bytes()}
        try:
            from liquid_shared.models import get_registry

            out["model_loads"] = {spec.model: n for spec, n in get_registry().load_counts.items()}
        except ImportError:  # pragma: no cover
            pass
        return out


# Progress hooks -------------------------------------------------------------------------------


@dataclass
class WorkerInfo:
    index: int
    pid: int
    host: str
    done: int = 0
    busy_seconds: float = 0.0
    lost: int = 0


class RayEvents:
    """Driver-side hooks (no-ops here; ``RichRayEvents`` draws bars, tests override them)."""

    def set_documents(self, total: int, skipped: int) -> None: ...

    def workers_started(self, workers: list[WorkerInfo]) -> None: ...

    def document_done(self, worker: WorkerInfo, outcome: dict[str, Any]) -> None: ...

    def worker_lost(self, worker: WorkerInfo, item: SourceItem, error: str) -> None: ...


class RichRayEvents(RichEvents, RayEvents):
    """The local run's bars (``RichEvents``) less chunks and LLM calls, which happen on the workers,
    plus one line per worker with its documents and throughput."""

    def __init__(self, console: Console | None = None):
        super().__init__(console)
        self.progress.remove_task(self._chunks)
        self.progress.remove_task(self._calls)
        self._workers: dict[int, int] = {}
        self._t0 = time.perf_counter()

    def workers_started(self, workers: list[WorkerInfo]) -> None:
        for w in workers:
            self._workers[w.index] = self.progress.add_task(f"worker {w.index} (pid {w.pid})", total=None, note="")

    def document_done(self, worker: WorkerInfo, outcome: dict[str, Any]) -> None:  # type: ignore[override]
        self.progress.advance(self._docs)
        minutes = (time.perf_counter() - self._t0) / 60
        note = f"{worker.done / minutes:.1f} docs/min" + (f", {worker.lost} lost" if worker.lost else "")
        self.progress.update(self._workers[worker.index], completed=worker.done, note=note)

    def worker_lost(self, worker: WorkerInfo, item: SourceItem, error: str) -> None:
        self.console.print(f"[yellow]worker {worker.index} lost while processing {item.source}; resubmitting ({error[:120]})")


# The driver -----------------------------------------------------------------------------------


@dataclass
class ClusterPlan:
    """How many workers and how many CPUs each (defaults: one worker per CPU of the cluster)."""

    workers: int
    cpus_per_worker: int
    cluster_cpus: int


def connect(address: str, *, num_cpus: int | None = None, object_store_memory: int | None = None) -> bool:
    """Join or start a Ray cluster; returns True if this call started a local one (``local``)."""
    try:
        import ray
    except ImportError:
        raise FatalError(INSTALL_HINT) from None
    if address not in ("local", "auto") and not address.startswith("ray://"):
        raise FatalError(f"--ray {address!r}: expected 'local', 'auto' or 'ray://host:port'")
    if ray.is_initialized():  # this process already joined or started a cluster: use it
        return False
    if address == "local":
        # Ray starts workers at niceness 15; on a machine shared with other work that starves them, and a
        # one-process run (niceness 0) would not be compared on equal terms. An explicit setting wins.
        os.environ.setdefault("RAY_worker_niceness", "0")
        settings = {"num_cpus": num_cpus or os.cpu_count(), "include_dashboard": False,
                    "object_store_memory": object_store_memory, "log_to_driver": False}
        try:
            ray.init(**settings)
        except Exception:  # Ray gives its raylet 30 s to register; an overloaded machine gets a second try
            ray.shutdown()
            ray.init(**settings)
        return True
    try:
        ray.init(address=address, log_to_driver=False)
    except Exception as exc:  # ConnectionError, or a client handshake failure
        raise FatalError(f"cannot join the Ray cluster at {address!r}: {type(exc).__name__}: {exc}") from None
    return False


def plan_cluster(workers: int | None, cpus_per_worker: int | None) -> ClusterPlan:
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1))
    if workers is None:
        per = cpus_per_worker or 1
        workers = max(1, cpus // per)
    else:
        per = cpus_per_worker or max(1, cpus // workers)
    if workers * per > cpus:
        raise FatalError(f"{workers} workers x {per} CPUs need {workers * per} CPUs; the cluster has {cpus}")
    return ClusterPlan(workers=workers, cpus_per_worker=per, cluster_cpus=cpus)


def _forwarded_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(("LIQUID_", "HF_", "TRANSFORMERS_"))}


def run_on_ray(
    config: EtlConfig,
    address: str = "local",
    *,
    workers: int | None = None,
    cpus_per_worker: int | None = None,
    events: RayEvents | None = None,
    track: bool = True,
    experiment: str = "etl",
    num_cpus: int | None = None,
    object_store_memory: int | None = None,
    shutdown: bool | None = None,
) -> RunResult:
    """Process the selected documents on Ray workers, then merge on the driver (never raises for bad input).

    ``workers``/``cpus_per_worker`` size the worker pool (default one 1-CPU worker per cluster
    CPU); ``docs_in_flight`` of ``config`` is the bound per worker. ``num_cpus`` and
    ``object_store_memory`` apply when ``address='local'`` starts a cluster, which is shut down
    at the end unless ``shutdown=False``.
    """
    events = events or RayEvents()
    try:
        tracking = experiment if track else None  # the MLflow experiment, or None: not tracked
        return _run(config, address, workers, cpus_per_worker, events, tracking, num_cpus, object_store_memory, shutdown)
    except FatalError as exc:
        return RunResult(exit_code=EXIT_FATAL, output_dir=config.output_dir, message=str(exc))


def _run(config, address, workers, cpus_per_worker, events, tracking, num_cpus, object_store_memory, shutdown) -> RunResult:
    """The driver holds the run folder's lock for the whole run, as a local run does (workers only
    write their own documents' shards, through temp-then-rename)."""
    try:
        with hold_output_lock(config.output_dir):
            return _run_locked(config, address, workers, cpus_per_worker, events, tracking, num_cpus, object_store_memory, shutdown)
    except RunFolderError as exc:
        raise FatalError(str(exc)) from None


def _run_locked(config, address, workers, cpus_per_worker, events, tracking, num_cpus, object_store_memory, shutdown) -> RunResult:
    started_wall = time.time()
    found, selected, replaced_input, store, work = prepare_run(config)  # the local run's rules, shared
    todo = work.todo
    events.set_documents(len(selected), len(selected) - len(todo))

    started_local = connect(address, num_cpus=num_cpus, object_store_memory=object_store_memory)
    import ray

    try:
        plan = plan_cluster(workers, cpus_per_worker)
        t0 = time.perf_counter()
        cluster = (_process_on_workers(ray, config, todo, plan, events) if todo
                   else {"workers": [], "retries": 0, "lost": [], "overhead": {}})
        processing_seconds = time.perf_counter() - t0
    finally:
        if started_local and shutdown is not False:
            ray.shutdown()

    outcomes = cluster.get("outcomes", [])
    this_run = {
        "selected": len(selected),
        "processed": len(todo),
        "skipped_unchanged": len(selected) - len(todo),
        "processing_seconds": round(processing_seconds, 3),
        "chunks_processed": sum(o.get("n_chunks", 0) for o in outcomes),
        "documents_done": sum(1 for o in outcomes if o["status"] == "done"),
        "documents_failed": sum(1 for o in outcomes if o["status"] == "failed"),
    }
    minutes = processing_seconds / 60 if processing_seconds > 0 else float("nan")
    this_run["chunks_per_minute"] = round(this_run["chunks_processed"] / minutes, 2) if todo else 0.0
    this_run["documents_per_minute"] = round(len(todo) / minutes, 2) if todo else 0.0
    ray_report = {
        "address": address, "workers": plan.workers, "cpus_per_worker": plan.cpus_per_worker, "cluster_cpus": plan.cluster_cpus,
        "docs_in_flight_per_worker": config.effective_docs_in_flight, "retries": cluster["retries"], "lost": cluster["lost"],
        "per_worker": cluster["workers"], "dispatch_overhead": cluster["overhead"],
    }
    report = merge_on_driver(config, selected, store, this_run=this_run, started_at=started_wall, ray_report=ray_report,
                             run_notes=_run_notes(found, work, replaced_input))
    failed = report["documents"]["failed"] + report["documents"]["missing"] + report["documents"]["refused"]
    result = RunResult(exit_code=EXIT_PARTIAL if failed else EXIT_OK, output_dir=config.output_dir, report=report)
    if tracking:
        result.report["mlflow"] = log_to_mlflow(config, result, experiment=tracking)
        _write_report(config, result.report)
    return result


def _process_on_workers(ray, config: EtlConfig, todo: list[SourceItem], plan: ClusterPlan, events: RayEvents) -> dict[str, Any]:
    from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

    per_worker = config.effective_docs_in_flight
    n = min(plan.workers, len(todo))
    actor_class = ray.remote(
        num_cpus=plan.cpus_per_worker, max_restarts=ACTOR_MAX_RESTARTS, max_task_retries=0, max_concurrency=per_worker,
    )(DocumentWorker)
    env = _forwarded_env()
    actors = [actor_class.remote(config, env, plan.cpus_per_worker) for _ in range(n)]
    infos = ray.get([a.info.remote() for a in actors])
    workers = [WorkerInfo(index=i, pid=info["pid"], host=info["host"]) for i, info in enumerate(infos)]
    first_pids = [w.pid for w in workers]
    events.workers_started(workers)

    queue: deque[SourceItem] = deque(todo)
    attempts: dict[str, int] = {}
    pending: dict[Any, tuple[int, SourceItem, float]] = {}  # document calls: worker, document, when submitted
    probes: dict[Any, int] = {}  # info() calls to a lost worker: they return once Ray has restarted it
    load = [0] * n
    outcomes: list[dict[str, Any]] = []
    lost: list[dict[str, Any]] = []
    retries = 0
    dead: set[int] = set()
    restarting: set[int] = set()
    restart_began: dict[int, float] = {}
    overheads: list[float] = []  # driver round trip minus the worker's own time, per document

    def submit() -> None:
        for w in range(n):
            while queue and w not in dead and w not in restarting and load[w] < per_worker:
                item = queue.popleft()
                attempts[item.doc_id] = attempts.get(item.doc_id, 0) + 1
                pending[actors[w].process.remote(item)] = (w, item, time.perf_counter())
                load[w] += 1

    try:
        submit()
        while pending or probes:  # a lost worker's restart is awaited even at the end, for its report
            ready, _ = ray.wait([*pending, *probes], num_returns=1)
            ref = ready[0]
            if ref in probes:  # a lost worker is back (a new process, its model not loaded yet) or gone for good
                w = probes.pop(ref)
                try:
                    workers[w].pid = ray.get(ref)["pid"]
                except ActorUnavailableError:  # still restarting: ask again shortly
                    if time.monotonic() - restart_began[w] < RESTART_WAIT_SECONDS:
                        time.sleep(0.5)
                        probes[actors[w].info.remote()] = w
                        continue
                    dead.add(w)
                except RayActorError:  # out of restarts, or its node is gone
                    dead.add(w)
                restarting.discard(w)
                submit()
                continue
            w, item, submitted = pending.pop(ref)
            load[w] -= 1
            round_trip = time.perf_counter() - submitted
            try:
                outcome = ray.get(ref)
            except RayActorError as exc:
                first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                lost.append({"worker": w, "pid": workers[w].pid, "source": item.source, "error": first_line[:300]})
                events.worker_lost(workers[w], item, first_line)
                if w not in restarting and w not in dead:
                    workers[w].lost += 1
                    restarting.add(w)
                    restart_began[w] = time.monotonic()
                    probes[actors[w].info.remote()] = w
                if attempts[item.doc_id] < MAX_ATTEMPTS:
                    retries += 1
                    queue.appendleft(item)  # a retry goes first; the worker's shard check makes it idempotent
                submit()
                continue
            except RayTaskError as exc:  # an exception outside the per-document guard (e.g. the embedder's load)
                raise FatalError(f"a worker failed on {item.source}: {str(exc).splitlines()[0]}") from None
            if outcome["status"] == "fatal":
                raise FatalError(f"the model could not be used on a worker: {outcome['error']}")
            workers[w].done += 1
            workers[w].busy_seconds += outcome.get("seconds", 0.0)
            if not outcome.get("reused"):
                overheads.append(round_trip - outcome["seconds"])
            outcomes.append(outcome)
            events.document_done(workers[w], outcome)
            submit()
        # what is still queued here had no live worker left: reported missing; the same command resumes it
        per_worker_stats = []
        for w, actor in enumerate(actors):
            entry = {"index": w, "first_pid": first_pids[w], "documents": workers[w].done, "restarts": workers[w].lost}
            if w not in dead:
                try:
                    entry.update(ray.get(actor.stats.remote(), timeout=30))
                except Exception as exc:  # a worker that died at the very end
                    entry["error"] = f"{type(exc).__name__}: {exc}"[:300]
            entry["documents"] = workers[w].done  # the driver's count (a restarted actor starts from 0)
            per_worker_stats.append(entry)
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
    overhead = {"documents": len(overheads), "mean_seconds": round(sum(overheads) / len(overheads), 4) if overheads else None,
                "max_seconds": round(max(overheads), 4) if overheads else None,
                "note": "driver-side round trip of a document minus the worker's own processing time: scheduling, "
                        "argument and result transfer, and waiting in the worker's queue when docs_in_flight > 1"}
    return {"outcomes": outcomes, "workers": per_worker_stats, "retries": retries, "lost": lost, "overhead": overhead}


def merge_on_driver(config: EtlConfig, selected, store: ShardStore, *, this_run, started_at, ray_report,
                    run_notes: dict[str, Any] | None = None) -> dict[str, Any]:
    """The driver's share: merge the shards into the top-level files, run the checks, write the report."""
    from etl_pipeline.merge import merge_run
    from etl_pipeline.quality import check_run
    from liquid_shared.embeddings import get_embedder

    store.remove_temporaries()  # folders of documents whose worker was killed mid-write
    dim = int(get_embedder().dim)
    report = merge_run(config, selected, store, this_run=this_run, started_at=started_at,
                       memory={"driver_peak_rss_bytes": peak_rss_bytes(), "peak_rss_bytes": _cluster_peak(ray_report)}, dim=dim,
                       run_notes=run_notes)
    report["ray"] = ray_report
    try:
        quality = check_run(config.output_dir, max_tokens=config.max_chunk_tokens)
        report["quality"] = {
            "neighbour_cosine_mean": quality["sequential_coherence"]["neighbours"].get("mean"),
            "lift_over_cross_document": quality["sequential_coherence"].get("lift"),
            "distinct_tmd_codes": quality["tmd"]["distinct_codes"],
        }
    except Exception as exc:  # the checks are advisory, as in a local run
        report["quality"] = {"error": f"{type(exc).__name__}: {exc}"}
    from etl_pipeline.dataset_card import attach_dataset

    attach_dataset(config.output_dir, report)  # parquet + README.md, as in a local run; never fails the run
    _write_report(config, report)
    return report


def _cluster_peak(ray_report: dict[str, Any]) -> int:
    """The largest peak RSS of one worker (the figure a local run reports for its one process)."""
    return max([w.get("peak_rss_bytes", 0) for w in ray_report["per_worker"]] + [peak_rss_bytes()])


def _write_report(config: EtlConfig, report: dict[str, Any]) -> None:
    from etl_pipeline.merge import write_json_atomic

    write_json_atomic(config.output_dir / "report.json", report)



def run_cli(config: EtlConfig, console: Console, address: str, *, workers: int | None, cpus_per_worker: int | None,
            quiet: bool, track: bool, experiment: str = "etl") -> int:
    """``run_etl --ray ADDRESS``: the run with progress bars and the summary table; returns the exit code."""
    from etl_pipeline.progress import summary_table

    console.print(f"ETL on Ray ({address}) {config.input_dir} -> {config.output_dir} (profile {config.profile}, "
                  f"{config.effective_docs_in_flight} documents in flight per worker)")
    if quiet:
        result = run_on_ray(config, address, workers=workers, cpus_per_worker=cpus_per_worker, track=track,
                            experiment=experiment)
    else:
        with RichRayEvents(console) as events:
            result = run_on_ray(config, address, workers=workers, cpus_per_worker=cpus_per_worker, events=events, track=track,
                                experiment=experiment)
    if result.exit_code == EXIT_FATAL:
        console.print(f"[red]fatal:[/red] {result.message}")
        return EXIT_FATAL
    Console().print(summary_table(result.report))
    ray_report = result.report["ray"]
    console.print(f"{ray_report['workers']} workers x {ray_report['cpus_per_worker']} CPUs, {ray_report['retries']} documents "
                  f"resubmitted after a lost worker; outputs in {result.output_dir} — status {result.status}")
    return result.exit_code
