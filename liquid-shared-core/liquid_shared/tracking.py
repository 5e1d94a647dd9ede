"""Experiment tracking with MLflow, plus a local copy that is always written.

    from liquid_shared.tracking import start_run

    with start_run("rag_quality", run_name="bm25", params={"retriever": {"k1": 1.5}}) as run:
        run.log_metrics({"ndcg@10": 0.69})
        run.log_dict(per_query, "per_query.json")

* **Where.** The tracking URI is, first found: the ``tracking_uri`` argument, ``LIQUID_MLFLOW_URI``
  (also ``mlflow_uri`` in ``liquid.toml``), else ``sqlite:///<project root>/mlruns.db`` with
  artifacts in ``<project root>/mlartifacts/`` (no server). The project root is the nearest folder
  above the working directory with a ``.git`` folder or a ``pyproject.toml`` declaring
  ``[tool.uv.workspace]``, else the working directory.
* **Local copy.** Every run also writes ``run.json`` (params, tags, last metric values, status),
  ``metrics.jsonl`` (every value with its step) and ``artifacts/`` into ``run.local_dir``
  (default ``<project root>/results/tracking/<experiment>/<time>-<run name>-<id>``; nested runs
  go inside their parent's folder). If MLflow fails (unreachable server, unwritable store), the
  run goes on locally, ``run.mlflow_ok`` turns False and a ``RuntimeWarning`` says where the
  results are. For http(s) URIs we default ``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0`` and
  ``MLFLOW_HTTP_REQUEST_TIMEOUT=5`` (unless already set) so that a dead server fails in
  milliseconds instead of minutes of retries.
* **Names.** MLflow keys allow only letters, digits, ``_ - . : /`` and spaces, so MLflow gets
  ``mlflow_key(name)``: '@' becomes '_at_' (``ndcg@10`` -> ``ndcg_at_10``), anything else '_'.
  The local copy keeps the names as given.
* **Async.** We use ``MlflowClient`` with explicit run ids, never MLflow's global "active run",
  and keep our own stack of active runs in a ``contextvars.ContextVar``: runs opened in concurrent
  asyncio tasks do not see each other, and ``nested=True`` finds the parent of its own task. The
  calls are ordinary blocking calls (no event loop is started), so they work inside
  ``asyncio.run(...)``; wrap them in ``asyncio.to_thread`` if a remote server's latency matters.
* **Auto tags.** ``git.commit`` (and MLflow's ``mlflow.source.git.commit``), ``git.dirty``, the
  versions of torch, transformers, pydantic-ai, mlflow and the installed liquid packages
  (``version.<package>``), ``device``, ``python``, ``host``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import numbers
import os
import platform
import re
import shutil
import subprocess
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from liquid_shared.atomic import write_json_atomic
from liquid_shared.config import get_settings

log = logging.getLogger(__name__)

_ACTIVE: ContextVar[tuple[TrackedRun, ...]] = ContextVar("liquid_shared_tracking_active", default=())
_VERSION_PACKAGES = ("torch", "transformers", "pydantic-ai-slim", "pydantic-ai", "pydantic-graph", "mlflow",
                     "sentence-transformers", "numpy")
_MLFLOW_KEY_BAD = re.compile(r"[^\w\-. :/]")
_BATCH = {"metrics": 1000, "params": 100, "tags": 100}  # MLflow's log_batch limits


# Locations -------------------------------------------------------------------------------------


def project_root(start: Path | None = None) -> Path:
    """Nearest folder (from ``start``, default cwd, upwards) with ``.git`` or a uv-workspace pyproject."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".git").is_dir():
            return folder
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            with contextlib.suppress(OSError, UnicodeDecodeError):
                if "[tool.uv.workspace]" in pyproject.read_text(encoding="utf-8"):
                    return folder
    return here


def default_tracking_uri(root: Path | None = None) -> str:
    return f"sqlite:///{(root or project_root()) / 'mlruns.db'}"


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """The argument, else ``LIQUID_MLFLOW_URI`` / settings ``mlflow_uri``, else the project sqlite file."""
    return tracking_uri or os.environ.get("LIQUID_MLFLOW_URI") or get_settings().mlflow_uri or default_tracking_uri()


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [1, 2]}`` -> ``{"a.b": 1, "c": [1, 2]}`` (dataclasses/pydantic models too)."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if hasattr(value, "model_dump"):
            value = value.model_dump(mode="json")
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def _param_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Path):
        return str(value)
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return obj.tolist()
    if isinstance(obj, Path | datetime):
        return str(obj)
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def _write_json_atomic(path: Path, obj: Any) -> None:
    write_json_atomic(path, obj, default=_json_default)


def mlflow_key(name: str) -> str:
    """MLflow allows only alphanumerics, ``_ - . : /`` and spaces in keys: '@' becomes '_at_'
    (``ndcg@10`` -> ``ndcg_at_10``), any other character '_'."""
    return _MLFLOW_KEY_BAD.sub("_", name.replace("@", "_at_"))


def _slug(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text).strip("_") or "run"


# Automatic tags --------------------------------------------------------------------------------


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _device_tag() -> str:
    try:
        import torch
    except ImportError:
        return "cpu (torch not installed)"
    if torch.cuda.is_available():
        return f"cuda:0 ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} GPU)"
    return f"cpu ({os.cpu_count()} cores)"


@functools.lru_cache(maxsize=1)
def _process_tags() -> tuple[tuple[str, str], ...]:
    """Tags that cannot change while the process lives: versions, device, Python, host."""
    from importlib import metadata

    tags = {"python": platform.python_version(), "host": platform.node(), "device": _device_tag()}
    names = set(_VERSION_PACKAGES)
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name.startswith("liquid") or name == "experiments":
            names.add(name)
    for name in sorted(names):
        with contextlib.suppress(metadata.PackageNotFoundError):
            tags[f"version.{name}"] = metadata.version(name)
    return tuple(tags.items())


def environment_tags(root: Path | None = None) -> dict[str, str]:
    """Git commit and dirtiness, package versions, device, Python and host."""
    root = root or project_root()
    tags = dict(_process_tags())
    commit = _git(root, "rev-parse", "HEAD")
    tags["git.commit"] = commit or "unknown (no git repository or no commit yet)"
    if commit:
        tags["mlflow.source.git.commit"] = commit
        status = _git(root, "status", "--porcelain", "--untracked-files=no")
        if status is not None:
            tags["git.dirty"] = str(bool(status)).lower()
    return tags


# The run ---------------------------------------------------------------------------------------


class TrackedRun:
    """One run: MLflow when it works, the local copy in ``local_dir`` always. Use ``start_run``."""

    def __init__(self, experiment: str, run_name: str, tracking_uri: str, parent: TrackedRun | None):
        self.experiment = experiment
        self.run_name = run_name
        self.tracking_uri = tracking_uri
        self.parent_run_id = parent.run_id if parent else None
        self.run_id = uuid.uuid4().hex
        self.local_dir = Path()
        self.mlflow_ok = True
        self.mlflow_error: str | None = None
        self.status = "RUNNING"
        self.params: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.metrics: dict[str, float] = {}
        self.artifacts: list[str] = []
        self.start_time = datetime.now(UTC).isoformat()
        self.end_time: str | None = None
        self._client: Any = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return (f"TrackedRun(experiment={self.experiment!r}, run_name={self.run_name!r}, run_id={self.run_id!r}, "
                f"mlflow_ok={self.mlflow_ok}, local_dir='{self.local_dir}')")

    # MLflow calls, degrading to local-only on failure ---------------------------------------------

    def _mlflow(self, action: str, fn, *args: Any, **kwargs: Any) -> Any:
        if not self.mlflow_ok:
            return None
        from mlflow.exceptions import MlflowException

        try:
            return fn(*args, **kwargs)
        except MlflowException as exc:
            if exc.error_code == "INVALID_PARAMETER_VALUE":  # this item only: MLflow itself still works
                message = (f"MLflow rejected {action} for run {self.run_name!r} ({exc.message[:300]}); "
                           f"it is kept in the local copy {self.local_dir}")
                log.warning(message)
                warnings.warn(message, RuntimeWarning, stacklevel=4)
            else:
                self._fail(action, exc)
        except Exception as exc:  # any store, network or file-system failure: keep going locally
            self._fail(action, exc)
        return None

    def _fail(self, action: str, exc: BaseException) -> None:
        self.mlflow_ok = False
        self.mlflow_error = f"{action}: {type(exc).__name__}: {str(exc)[:500]}"
        message = (f"MLflow tracking at {self.tracking_uri} failed while {action} ({type(exc).__name__}: "
                   f"{str(exc)[:200]}). Run {self.run_name!r} continues without MLflow; its params, metrics and "
                   f"artifacts are written to {self.local_dir}")
        log.warning(message)
        warnings.warn(message, RuntimeWarning, stacklevel=4)
        self._write_summary()

    def _log_batch(self, metrics=(), params=(), tags=()) -> None:
        if not self.mlflow_ok:
            return
        for kind, items in (("metrics", list(metrics)), ("params", list(params)), ("tags", list(tags))):
            size = _BATCH[kind]
            for start in range(0, len(items), size):
                chunk = items[start:start + size]
                self._mlflow(f"logging {kind}", self._client.log_batch, self.run_id, **{kind: chunk})

    # Local copy -------------------------------------------------------------------------------

    def _write_summary(self) -> None:
        if not self.local_dir.parts:
            return
        with self._lock:
            _write_json_atomic(self.local_dir / "run.json", {
                "experiment": self.experiment, "run_name": self.run_name, "run_id": self.run_id,
                "parent_run_id": self.parent_run_id, "status": self.status, "start_time": self.start_time,
                "end_time": self.end_time, "tracking_uri": self.tracking_uri, "mlflow_ok": self.mlflow_ok,
                "mlflow_error": self.mlflow_error, "params": self.params, "tags": self.tags,
                "metrics": self.metrics, "artifacts": self.artifacts})

    def _artifact_path(self, name: str) -> Path:
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ValueError(f"artifact name {name!r} must be a relative path inside the run, e.g. 'plots/ndcg.png'")
        path = self.local_dir / "artifacts" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _upload(self, local: Path, name: str) -> None:
        with self._lock:
            self.artifacts.append(name)
        self._write_summary()
        if not self.mlflow_ok:
            return
        folder = str(Path(name).parent) if Path(name).parent != Path(".") else None
        if local.is_dir():
            self._mlflow(f"uploading artifact {name}", self._client.log_artifacts, self.run_id, str(local), name)
        else:
            self._mlflow(f"uploading artifact {name}", self._client.log_artifact, self.run_id, str(local), folder)

    # Public API -------------------------------------------------------------------------------

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log parameters; nested dicts (and pydantic models, dataclasses) are flattened with '.'."""
        from mlflow.entities import Param

        new = {}
        for key, value in flatten_params(params).items():
            text = _param_text(value)
            if key in self.params:
                if self.params[key] != text:
                    raise ValueError(f"param {key!r} was already logged as {self.params[key]!r}, now {text!r}; "
                                     "MLflow params cannot change within a run (log a metric or a tag instead)")
                continue
            new[key] = text
        if not new:
            return
        with self._lock:
            self.params.update(new)
        self._write_summary()
        self._log_batch(params=[Param(mlflow_key(k), v) for k, v in new.items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log numeric metrics (bools count as 0/1) at ``step`` (default 0)."""
        from mlflow.entities import Metric

        if step is not None:
            if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
                raise ValueError(f"step must be a non-negative int, got {step!r}")
            step = int(step)
        stamp = int(time.time() * 1000)
        values = {}
        for key, value in metrics.items():
            try:
                values[str(key)] = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"metric {key!r}: value {value!r} is not a number") from None
        if not values:
            return
        with self._lock:
            self.metrics.update(values)
            with (self.local_dir / "metrics.jsonl").open("a", encoding="utf-8") as fh:
                for key, value in values.items():
                    fh.write(json.dumps({"key": key, "value": value if math.isfinite(value) else str(value),
                                         "step": step or 0, "timestamp": stamp}) + "\n")
        self._write_summary()
        self._log_batch(metrics=[Metric(mlflow_key(k), v, stamp, step or 0) for k, v in values.items()])

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        self.log_metrics({key: value}, step=step)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        new = {str(k): _param_text(v) for k, v in tags.items()}
        with self._lock:
            self.tags.update(new)
        self._write_summary()
        self._log_batch(tags=[RunTag(mlflow_key(k), v) for k, v in new.items()])

    def log_dict(self, obj: Any, artifact_name: str) -> Path:
        """Write ``obj`` as JSON to ``artifact_name`` ('.json' added if missing); returns the local file."""
        if not artifact_name.endswith(".json"):
            artifact_name += ".json"
        path = self._artifact_path(artifact_name)
        _write_json_atomic(path, obj)
        self._upload(path, artifact_name)
        return path

    def log_text(self, text: str, artifact_name: str) -> Path:
        path = self._artifact_path(artifact_name)
        path.write_text(text, encoding="utf-8")
        self._upload(path, artifact_name)
        return path

    def log_dataframe(self, df: Any, artifact_name: str) -> Path:
        """Write a pandas DataFrame as CSV (no index) to ``artifact_name`` ('.csv' added if missing)."""
        if not artifact_name.endswith(".csv"):
            artifact_name += ".csv"
        path = self._artifact_path(artifact_name)
        df.to_csv(path, index=False)
        self._upload(path, artifact_name)
        return path

    def log_figure(self, fig: Any, name: str, dpi: int = 150) -> Path:
        """Save a matplotlib figure as PNG under ``name`` ('.png' added if missing)."""
        if not name.endswith(".png"):
            name += ".png"
        path = self._artifact_path(name)
        fig.savefig(path, format="png", dpi=dpi, bbox_inches="tight")
        self._upload(path, name)
        return path

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> Path:
        """Copy a file or folder into the run (under ``artifact_path``, a folder, when given)."""
        source = Path(path)
        if not source.exists():
            raise FileNotFoundError(f"artifact {source} does not exist")
        name = f"{artifact_path.strip('/')}/{source.name}" if artifact_path else source.name
        target = self._artifact_path(name)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
        self._upload(target, name)
        return target


def _open_mlflow(run: TrackedRun, experiment: str, tags: dict[str, str]) -> None:
    """Create the MLflow client, experiment and run; sets ``run.run_id`` (or fails over to local)."""
    uri = run.tracking_uri
    if uri.startswith(("http://", "https://")):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")

    def create() -> None:
        from mlflow import MlflowClient

        artifact_location = None
        if uri.startswith("sqlite:///"):
            db = Path(uri.removeprefix("sqlite:///"))
            db.parent.mkdir(parents=True, exist_ok=True)
            artifact_location = str(db.parent / "mlartifacts" / _slug(experiment))
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            try:
                exp_id = client.create_experiment(experiment, artifact_location=artifact_location)
            except Exception:  # another process created it meanwhile
                exp = client.get_experiment_by_name(experiment)
                if exp is None:
                    raise
                exp_id = exp.experiment_id
        else:
            exp_id = exp.experiment_id
            if exp.lifecycle_stage == "deleted":
                client.restore_experiment(exp_id)
        created = client.create_run(exp_id, run_name=run.run_name, tags={mlflow_key(k): v for k, v in tags.items()})
        run._client = client
        run.run_id = created.info.run_id

    action = f"creating the run in experiment {experiment!r}"
    run._mlflow(action, create)
    if run.mlflow_ok and run._client is None:  # rejected rather than failed: still no run to log to
        run._fail(action, RuntimeError("MLflow rejected the run"))


@contextlib.contextmanager
def start_run(experiment: str, run_name: str | None = None, params: Mapping[str, Any] | None = None,
              tags: Mapping[str, Any] | None = None, nested: bool = False, tracking_uri: str | None = None,
              local_dir: Path | str | None = None) -> Iterator[TrackedRun]:
    """Open a tracked run (MLflow plus local copy); see the module docstring.

    ``nested=True`` makes it a child of the innermost run open in this context (thread or asyncio
    task); there must be one. The run ends FINISHED, or FAILED if the block raises.
    """
    if not experiment or not isinstance(experiment, str):
        raise ValueError(f"experiment must be a non-empty string, got {experiment!r}")
    stack = _ACTIVE.get()
    parent = stack[-1] if nested and stack else None
    if nested and parent is None:
        raise ValueError("nested=True but no run is open in this context; open the parent with start_run first")
    uri = tracking_uri or (parent.tracking_uri if parent else resolve_tracking_uri())
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run = TrackedRun(experiment, run_name or f"{_slug(experiment)}-{stamp}", uri, parent)
    root = project_root()

    all_tags = environment_tags(root)
    if parent is not None:
        all_tags["mlflow.parentRunId"] = parent.run_id
    all_tags.update({str(k): _param_text(v) for k, v in (tags or {}).items()})
    run.tags.update(all_tags)

    if local_dir is not None:
        run.local_dir = Path(local_dir).absolute()
    else:
        base = parent.local_dir / "children" if parent else root / "results" / "tracking" / _slug(experiment)
        run.local_dir = base / f"{stamp}-{_slug(run.run_name)}-{uuid.uuid4().hex[:6]}"
    run.local_dir.mkdir(parents=True, exist_ok=True)
    _open_mlflow(run, experiment, all_tags)
    run._write_summary()
    if params:
        run.log_params(params)

    token = _ACTIVE.set((*stack, run))
    try:
        yield run
    except BaseException:
        run.status = "FAILED"
        raise
    else:
        run.status = "FINISHED"
    finally:
        _ACTIVE.reset(token)
        run.end_time = datetime.now(UTC).isoformat()
        run._mlflow("ending the run", lambda: run._client.set_terminated(run.run_id, status=run.status))
        run._write_summary()


def active_run() -> TrackedRun | None:
    """The innermost run open in this context, or None."""
    stack = _ACTIVE.get()
    return stack[-1] if stack else None
