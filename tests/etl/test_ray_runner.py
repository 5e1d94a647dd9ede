"""The ETL on a local Ray cluster (2 CPUs), with the real offline model in every worker.

* the Ray run's merged top-level files are byte-identical to the single-process run's with the
  same settings (greedy fp32), and each worker loaded the model once through its registry;
* a worker SIGKILLed while a document is in flight: Ray restarts it, the driver resubmits that
  document, and the run ends with every document done exactly once (same bytes again).

Small settings keep it inside the CI budget: three documents, one chunk each, the summary stage.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from pathlib import Path

import pytest
from etl_helpers import RUN_INDEX_FILES, SAMPLES, run_file

from etl_pipeline import EXIT_OK, EtlConfig, run
from etl_pipeline.ray_runner import RayEvents, WorkerInfo, run_on_ray

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'liquid-etl-pipeline[ray]'")

pytestmark = [pytest.mark.slow, pytest.mark.ray]

DOCS = ("tides.md", "sourdough_starter.txt", "bicycle_chain.rst")
SETTINGS = {"stages": ("summary",), "max_chunks_per_doc": 1, "concurrency": 2, "docs_in_flight": 1, "temperature": 0.0}
MERGED = ("chunks.jsonl", "metadata.jsonl", "summaries.jsonl", "qa_pairs.jsonl", "validation.jsonl", "ft/samples.jsonl",
          "ft/train.jsonl", "ft/train_alpaca.jsonl", *RUN_INDEX_FILES,
          "taxonomy.json", "manifest.json")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ray_inputs")
    for name in DOCS:
        shutil.copy(SAMPLES / name, folder)
    return folder


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def cluster(monkeypatch_module):
    monkeypatch_module.setenv("RAY_worker_niceness", "0")  # as run_on_ray's own local cluster: see ray_runner.connect
    settings = {"num_cpus": 2, "include_dashboard": False, "object_store_memory": 100 * 2**20, "log_to_driver": False}
    try:
        ray.init(**settings)
    except Exception:  # Ray gives its raylet 30 s to register; on an overloaded machine try once more
        ray.shutdown()
        ray.init(**settings)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ray_reference") / "run"
    result = run(EtlConfig(input_dir=inputs, output_dir=out, **SETTINGS), track=False)
    assert result.exit_code == EXIT_OK, result.message
    return out


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _assert_same_outputs(out: Path, reference: Path) -> None:
    for name in MERGED:
        assert run_file(out, name) == run_file(reference, name), f"{name} differs from the single-process run"


def test_ray_run_is_byte_identical_to_the_single_process_run(cluster, inputs: Path, reference: Path, tmp_path: Path):
    out = tmp_path / "ray"
    result = run_on_ray(EtlConfig(input_dir=inputs, output_dir=out, **SETTINGS), "local", workers=2, track=False)
    assert result.exit_code == EXIT_OK, result.message
    _assert_same_outputs(out, reference)
    ray_report = result.report["ray"]
    assert ray_report["workers"] == 2 and ray_report["retries"] == 0
    workers = ray_report["per_worker"]
    assert sum(w["documents"] for w in workers) == len(DOCS)
    assert len({w["pid"] for w in workers}) == 2, "the documents did not run in two worker processes"
    assert os.getpid() not in {w["pid"] for w in workers}
    for w in workers:  # one load of the offline model per worker that processed a document
        assert w["documents"] == 0 or set(w["model_loads"].values()) == {1}, w
    summaries = _lines(out / "summaries.jsonl")
    assert len(summaries) == len(DOCS) and all(s["summary"].strip() for s in summaries)


class _KillOneWorker(RayEvents):
    """SIGKILL the first worker to finish a document while its next document is in flight."""

    def __init__(self, out: Path):
        self.out = out
        self.killed: WorkerInfo | None = None
        self.killed_pid = 0
        self.in_flight_then: set[str] = set()
        self._timer: threading.Timer | None = None

    def document_done(self, worker: WorkerInfo, outcome: dict) -> None:
        if self._timer is None:
            # the driver hands this worker its next document right after this hook; kill it shortly after
            self._timer = threading.Timer(0.5, self._kill, args=(worker,))
            self._timer.start()

    def _kill(self, worker: WorkerInfo) -> None:
        docs = self.out / "docs"
        self.in_flight_then = {p.name for p in docs.iterdir() if not p.name.startswith(".")}
        self.killed, self.killed_pid = worker, worker.pid
        os.kill(worker.pid, signal.SIGKILL)


def test_a_worker_killed_mid_document_ends_with_every_document_done_once(cluster, inputs: Path, reference: Path, tmp_path: Path):
    out = tmp_path / "ray_killed"
    events = _KillOneWorker(out)
    config = EtlConfig(input_dir=inputs, output_dir=out, **SETTINGS)
    result = run_on_ray(config, "local", workers=2, events=events, track=False)
    assert events.killed is not None, "no worker was killed"
    assert result.exit_code == EXIT_OK, result.message
    ray_report = result.report["ray"]
    assert ray_report["retries"] == 1 and len(ray_report["lost"]) == 1, ray_report
    lost = ray_report["lost"][0]
    assert lost["pid"] == events.killed_pid
    lost_doc = next(d for d in _lines(out / "chunks.jsonl") if d["metadata"]["source"] == lost["source"])["doc_id"]
    assert lost_doc not in events.in_flight_then, "the killed document was already done: the kill was not mid-document"
    killed = ray_report["per_worker"][events.killed.index]
    assert killed["first_pid"] == events.killed_pid and killed["restarts"] == 1
    assert killed["pid"] != events.killed_pid, "Ray did not restart the killed worker"
    # every document done exactly once, nothing left half-written
    manifest = json.loads((out / "manifest.json").read_text())["documents"]
    assert sorted(d["status"] for d in manifest) == ["done"] * len(DOCS)
    chunk_ids = [c["chunk_id"] for c in _lines(out / "chunks.jsonl")]
    assert len(chunk_ids) == len(set(chunk_ids)) == len(DOCS)
    assert not [p for p in (out / "docs").iterdir() if p.name.startswith(".")], "temporary shard folders were left behind"
    _assert_same_outputs(out, reference)


def test_a_bad_ray_address_is_a_clear_fatal_error(inputs: Path, tmp_path: Path):
    from typer.testing import CliRunner

    from etl_pipeline.run_etl import app

    result = CliRunner().invoke(app, [str(inputs), "-o", str(tmp_path / "out"), "--ray", "tcp://nowhere", "--quiet", "--no-track"])
    assert result.exit_code == 1
    assert "--ray 'tcp://nowhere': expected 'local', 'auto' or 'ray://host:port'" in " ".join(result.output.split())
    assert not (tmp_path / "out" / "chunks.jsonl").exists()
