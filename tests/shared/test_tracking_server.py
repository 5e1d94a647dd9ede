"""A real ``mlflow server`` process on loopback (sqlite store, served artifacts), started by a fixture.

* two experiment runs from two separate processes land in the one server, each with its
  metrics and its artifact (read back over HTTP);
* the server SIGKILLed in the middle of a run: the run goes on, a RuntimeWarning names the
  local copy, and the local copy holds everything logged before and after the kill; what
  reached the server before the kill is still there when a server is started again on the
  same store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from liquid_shared.tracking import start_run
from liquid_shared.tracking_server import free_port, server_command, wait_until_up

REPO = Path(__file__).resolve().parents[2]


class Server:
    def __init__(self, store: Path, port: int | None = None):
        self.store = store
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            server_command(store, port=self.port, workers=1), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: the uvicorn workers die with it
        )
        try:
            wait_until_up(self.url, self.process)
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One server store for the module: the first start creates its tables, later starts reuse them."""
    return tmp_path_factory.mktemp("mlflow-server-store")


@pytest.fixture(autouse=True)
def _patient_client(monkeypatch: pytest.MonkeyPatch):
    """tracking defaults to a 5 s request timeout (a dead server fails fast); a live server on a busy
    machine can take longer than that to answer its first requests."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")


@pytest.fixture
def server(store: Path):
    srv = Server(store)
    yield srv
    srv.kill()


CLIENT = textwrap.dedent("""
    import sys
    from liquid_shared.tracking import start_run
    name, uri, local = sys.argv[1:4]
    with start_run("team-shared", run_name=name, params={"who": name}, tracking_uri=uri, local_dir=local) as run:
        run.log_metrics({"score": len(name)})
        run.log_dict({"written_by": name}, "result.json")
    print(run.run_id, run.mlflow_ok)
""")


@pytest.mark.slow
def test_runs_from_two_processes_land_in_one_server_with_their_artifacts(server: Server, tmp_path: Path):
    from mlflow import MlflowClient

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "liquid-shared-core"), os.environ.get("PYTHONPATH", "")])}
    names = ("alice", "bobby-b")
    procs = [subprocess.Popen([sys.executable, "-c", CLIENT, name, server.url, str(tmp_path / name)], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in names]
    outputs = [p.communicate(timeout=180) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-2000:]
        assert out.split()[-1] == "True", f"the run fell back to local only: {err[-1000:]}"
    run_ids = {name: out.split()[-2] for name, (out, _) in zip(names, outputs, strict=True)}

    client = MlflowClient(tracking_uri=server.url)
    experiment = client.get_experiment_by_name("team-shared")
    runs = client.search_runs([experiment.experiment_id])
    assert set(run_ids.values()) <= {r.info.run_id for r in runs}
    for name, run_id in run_ids.items():
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and run.info.run_name == name
        assert run.data.metrics["score"] == len(name) and run.data.params["who"] == name
        assert [a.path for a in client.list_artifacts(run_id)] == ["result.json"]
        local = client.download_artifacts(run_id, "result.json", str(tmp_path / f"download-{name}"))
        assert json.loads(Path(local).read_text()) == {"written_by": name}
    # the artifacts went through the server into its own artifact root, not into the clients' folders
    assert list((server.store / "artifacts").rglob("result.json"))


@pytest.mark.slow
def test_server_killed_mid_run_keeps_everything_in_the_local_copy(server: Server, tmp_path: Path):
    from mlflow import MlflowClient

    local = tmp_path / "local-copy"
    with start_run("team-shared", run_name="interrupted", params={"lr": 0.1}, tracking_uri=server.url, local_dir=local) as run:
        run.log_metrics({"loss": 1.0}, step=0)
        run_id = run.run_id
        assert run.mlflow_ok
        server.kill()
        with pytest.warns(RuntimeWarning, match=r"continues without MLflow.*local-copy"):
            run.log_metrics({"loss": 0.5}, step=1)
        run.log_dict({"final": True}, "after_kill.json")
        assert not run.mlflow_ok
    summary = json.loads((local / "run.json").read_text())
    assert summary["status"] == "FINISHED" and summary["mlflow_ok"] is False
    assert "Connection" in summary["mlflow_error"] or "connect" in summary["mlflow_error"].lower()
    assert summary["params"] == {"lr": "0.1"} and summary["metrics"] == {"loss": 0.5}
    steps = [json.loads(line) for line in (local / "metrics.jsonl").read_text().splitlines()]
    assert [(m["step"], m["value"]) for m in steps] == [(0, 1.0), (1, 0.5)]
    assert json.loads((local / "artifacts" / "after_kill.json").read_text()) == {"final": True}

    # what the server had accepted before it died is still in its store
    again = Server(server.store)
    try:
        stored = MlflowClient(tracking_uri=again.url).get_run(run_id)
        assert stored.data.params["lr"] == "0.1"
        assert [m.value for m in MlflowClient(tracking_uri=again.url).get_metric_history(run_id, "loss")] == [1.0]
        assert stored.info.status == "RUNNING"  # it never heard the end: the local copy is the record
    finally:
        again.kill()
