"""liquid_shared.tracking: MLflow (sqlite) round trips from inside asyncio.run, nested runs, and the
local copy that survives an unreachable tracking server."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest

from liquid_shared import tracking
from liquid_shared.tracking import flatten_params, project_root, resolve_tracking_uri, start_run


@pytest.fixture(scope="module")
def sqlite_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite store for the module (creating one costs a few seconds of migrations)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlruns.db'}"


@pytest.fixture
def in_tmp_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work inside a throwaway project (a .git folder marks its root) so nothing lands in the repo."""
    (tmp_path / ".git").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LIQUID_MLFLOW_URI", raising=False)
    return tmp_path


def closed_port_uri() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there once the socket is closed


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    FigureCanvasAgg(fig)
    fig.add_subplot().plot([0, 1], [1, 0])
    return fig


@pytest.mark.slow
def test_run_written_inside_asyncio_run_is_readable_with_search_runs(sqlite_uri: str, in_tmp_project: Path) -> None:
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    async def experiment() -> tuple[str, str, Path]:
        assert asyncio.get_running_loop() is not None
        with start_run("async_exp", run_name="parent", params={"retriever": {"k1": 1.5, "b": 0.75}},
                       tags={"purpose": "test"}, tracking_uri=sqlite_uri) as run:
            for step in range(3):
                await asyncio.sleep(0)
                run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
            run.log_metrics({"ndcg@10": 0.69})
            run.log_dict({"q1": 0.5, "q2": 1.0}, "per_query.json")
            run.log_dataframe(pd.DataFrame({"qid": ["q1", "q2"], "ndcg": [0.5, 1.0]}), "tables/per_query.csv")
            run.log_figure(_figure(), "plots/curve")
            csv = in_tmp_project / "raw.csv"
            csv.write_text("qid,score\nq1,0.5\n")
            run.log_artifact(csv, artifact_path="tables")
            with start_run("async_exp", run_name="child", nested=True) as child:
                child.log_metrics({"recall@5": 0.4})
            assert run.mlflow_ok and child.mlflow_ok
            return run.run_id, child.run_id, run.local_dir

    parent_id, child_id, local = asyncio.run(experiment())

    mlflow.set_tracking_uri(sqlite_uri)
    runs = mlflow.search_runs(experiment_names=["async_exp"]).set_index("run_id")
    parent, child = runs.loc[parent_id], runs.loc[child_id]
    assert parent["params.retriever.k1"] == "1.5" and parent["params.retriever.b"] == "0.75"
    assert parent["metrics.ndcg_at_10"] == 0.69 and parent["metrics.loss"] == pytest.approx(1 / 3)
    assert parent["tags.purpose"] == "test" and parent["status"] == "FINISHED"
    assert parent["tags.version.mlflow"] == mlflow.__version__
    assert parent["tags.device"].startswith(("cpu", "cuda"))
    assert "tags.git.commit" in runs.columns
    assert child["tags.mlflow.parentRunId"] == parent_id and child["metrics.recall_at_5"] == 0.4

    client = MlflowClient(sqlite_uri)
    assert [m.step for m in client.get_metric_history(parent_id, "loss")] == [0, 1, 2]
    names = {a.path for a in client.list_artifacts(parent_id)} | {a.path for a in client.list_artifacts(parent_id, "plots")}
    names |= {a.path for a in client.list_artifacts(parent_id, "tables")}
    assert {"per_query.json", "plots/curve.png", "tables/per_query.csv", "tables/raw.csv"} <= names
    downloaded = Path(client.download_artifacts(parent_id, "per_query.json", str(in_tmp_project)))
    assert json.loads(downloaded.read_text()) == {"q1": 0.5, "q2": 1.0}

    summary = json.loads((local / "run.json").read_text())  # the local copy is written even when MLflow works
    assert summary["run_id"] == parent_id and summary["mlflow_ok"] and summary["status"] == "FINISHED"
    assert summary["metrics"]["ndcg@10"] == 0.69  # local names as given; MLflow's are mlflow_key(name)
    assert (local / "artifacts" / "plots" / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(local).startswith(str(in_tmp_project / "results" / "tracking" / "async_exp"))
    assert list((local / "children").iterdir())  # the nested run's copy lives inside its parent's


def test_concurrent_tasks_each_get_their_own_parent(sqlite_uri: str, in_tmp_project: Path) -> None:
    from mlflow import MlflowClient

    async def one(name: str) -> tuple[str, str]:
        with start_run("concurrent", run_name=name, tracking_uri=sqlite_uri) as parent:
            await asyncio.sleep(0.01)
            with start_run("concurrent", run_name=f"{name}-child", nested=True) as child:
                await asyncio.sleep(0.01)
                assert tracking.active_run() is child
            return parent.run_id, child.run_id

    async def main():
        return await asyncio.gather(one("a"), one("b"))

    client = MlflowClient(sqlite_uri)
    for parent_id, child_id in asyncio.run(main()):
        assert client.get_run(child_id).data.tags["mlflow.parentRunId"] == parent_id
    assert tracking.active_run() is None


def test_failing_block_marks_the_run_failed(sqlite_uri: str, in_tmp_project: Path) -> None:
    from mlflow import MlflowClient

    with pytest.raises(RuntimeError, match="boom"), start_run("failing", tracking_uri=sqlite_uri) as run:
        run.log_metrics({"x": 1})
        raise RuntimeError("boom")
    assert MlflowClient(sqlite_uri).get_run(run.run_id).info.status == "FAILED"
    assert json.loads((run.local_dir / "run.json").read_text())["status"] == "FAILED"


def test_unreachable_server_still_leaves_the_local_copy(in_tmp_project: Path) -> None:
    local = in_tmp_project / "copy"
    with pytest.warns(RuntimeWarning, match=r"MLflow tracking at http://127\.0\.0\.1:\d+ failed.*written to"):
        with start_run("offline", run_name="r", params={"model": {"name": "bm25"}}, tracking_uri=closed_port_uri(),
                       local_dir=local) as run:
            run.log_metrics({"ndcg@10": 0.5}, step=1)
            run.log_metrics({"ndcg@10": 0.6}, step=2)
            run.log_dict({"answer": 42}, "result")
            run.set_tags({"note": "offline"})
    assert not run.mlflow_ok and "creating the run" in run.mlflow_error
    summary = json.loads((local / "run.json").read_text())
    assert summary["params"] == {"model.name": "bm25"}
    assert summary["metrics"] == {"ndcg@10": 0.6}
    assert summary["tags"]["note"] == "offline" and summary["status"] == "FINISHED"
    assert summary["mlflow_ok"] is False
    history = [json.loads(line) for line in (local / "metrics.jsonl").read_text().splitlines()]
    assert [(h["value"], h["step"]) for h in history] == [(0.5, 1), (0.6, 2)]
    assert json.loads((local / "artifacts" / "result.json").read_text()) == {"answer": 42}


def test_params_are_flattened_and_immutable(sqlite_uri: str, in_tmp_project: Path) -> None:
    assert flatten_params({"a": {"b": {"c": 1}, "d": [1, 2]}, "e": "x", "f": {}}) == {
        "a.b.c": 1, "a.d": [1, 2], "e": "x", "f": {}}
    with start_run("params", tracking_uri=sqlite_uri) as run:
        run.log_params({"lr": 0.1, "layers": [1, 2]})
        run.log_params({"lr": 0.1})  # same value again: fine
        with pytest.raises(ValueError, match=r"param 'lr' was already logged as '0.1'"):
            run.log_params({"lr": 0.2})
        with pytest.raises(ValueError, match=r"metric 'm': value 'high' is not a number"):
            run.log_metrics({"m": "high"})
        with pytest.raises(ValueError, match="relative path"):
            run.log_dict({}, "../escape.json")
    assert run.params == {"lr": "0.1", "layers": "[1, 2]"}


def test_a_value_mlflow_rejects_warns_and_stays_local(sqlite_uri: str, in_tmp_project: Path) -> None:
    assert tracking.mlflow_key("ndcg@10") == "ndcg_at_10"
    assert tracking.mlflow_key("a/b c:d-e.f_g") == "a/b c:d-e.f_g"
    assert tracking.mlflow_key("p(x)") == "p_x_"
    with start_run("rejected", tracking_uri=sqlite_uri) as run:
        with pytest.warns(RuntimeWarning, match="MLflow rejected logging params"):
            run.log_params({"a/../b": 1})  # MLflow refuses names that would climb out of a folder
        run.log_params({"ok": 1})
        assert run.mlflow_ok
    assert run.params["a/../b"] == "1"
    from mlflow import MlflowClient

    assert MlflowClient(sqlite_uri).get_run(run.run_id).data.params == {"ok": "1"}


def test_nested_needs_an_open_parent(in_tmp_project: Path) -> None:
    with pytest.raises(ValueError, match="no run is open"), start_run("x", nested=True):
        pass


def test_uri_resolution_and_project_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from liquid_shared.config import get_settings

    workspace = tmp_path / "ws"
    (workspace / "pkg" / "sub").mkdir(parents=True)
    (workspace / "pyproject.toml").write_text("[tool.uv.workspace]\nmembers = ['pkg']\n")
    (workspace / "pkg" / "pyproject.toml").write_text("[project]\nname = 'pkg'\n")
    assert project_root(workspace / "pkg" / "sub") == workspace.resolve()
    assert project_root(tmp_path) == tmp_path.resolve()  # nothing above: the folder itself

    monkeypatch.chdir(workspace / "pkg")
    monkeypatch.delenv("LIQUID_MLFLOW_URI", raising=False)
    monkeypatch.delenv("LIQUID_CONFIG_FILE", raising=False)
    get_settings.cache_clear()
    try:
        assert resolve_tracking_uri() == f"sqlite:///{workspace.resolve() / 'mlruns.db'}"
        monkeypatch.setenv("LIQUID_MLFLOW_URI", "http://mlflow.team:5000")
        assert resolve_tracking_uri() == "http://mlflow.team:5000"
        assert resolve_tracking_uri("sqlite:///x.db") == "sqlite:///x.db"
    finally:
        get_settings.cache_clear()
