"""Run experiments one after another; a failing experiment is recorded and the next one still runs.

For each experiment: build its config (defaults < config file < command line), open its MLflow
run, call it, then write ``<output-dir>/<experiment>/metrics.json`` and ``experiment.json`` (status,
config, MLflow run id, error) and log the metrics to the parent run as ``<variant>.<metric>``.
``<output-dir>/summary.json`` records every experiment of the latest invocations.
"""

from __future__ import annotations

import json
import shutil
import time
import traceback
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from experiments.base import METRICS_FILE, ExperimentConfig, ExperimentResult, RunContext, json_safe
from experiments.config_file import ConfigFile, describe_validation_error
from experiments.registry import Experiment

MARKER_FILE = "experiment.json"
SUMMARY_FILE = "summary.json"


@dataclass
class Outcome:
    name: str
    status: str  # "ok" | "failed"
    seconds: float
    output_dir: str
    error: str | None = None
    run_id: str | None = None
    mlflow_ok: bool | None = None


class ExperimentFailed(RuntimeError):
    """Raised inside the runner to carry a clean message (no traceback) for a known cause."""


def build_config(experiment: Experiment, config_file: ConfigFile, overrides: dict[str, Any]) -> ExperimentConfig:
    """Defaults < config file (top-level keys, then the experiment's table) < command-line options.

    Top-level keys and command-line options apply only to experiments that have the field.
    """
    fields = experiment.config_type.model_fields
    values: dict[str, Any] = {k: v for k, v in config_file.common.items() if k in fields}
    values.update(config_file.sections.get(experiment.name, {}))
    values.update({k: v for k, v in overrides.items() if v is not None and k in fields})
    try:
        return experiment.config_type.model_validate(values)
    except ValidationError as exc:
        where = f" (from {config_file.path})" if experiment.name in config_file.sections else ""
        raise ExperimentFailed(f"invalid config{where}: {describe_validation_error(exc)}") from None


def _prepare_folder(folder: Path) -> None:
    """Start from an empty experiment folder; only a folder we wrote before (marker file) is cleared."""
    if folder.exists() and any(folder.iterdir()):
        if not (folder / MARKER_FILE).is_file():
            raise ExperimentFailed(f"output folder {folder} exists and was not written by run_experiments; "
                                   "choose another --output")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)


def _flat_metrics(result: ExperimentResult) -> dict[str, float]:
    flat = {}
    for variant, metrics in result.metrics.items():
        for metric, value in metrics.items():
            if value is not None:
                flat[f"{variant}.{metric}"] = float(value)
    return flat


def _write_marker(folder: Path, record: dict[str, Any]) -> None:
    (folder / MARKER_FILE).write_text(json.dumps(json_safe(record), indent=2, default=str) + "\n", encoding="utf-8")


def run_one(experiment: Experiment, config_file: ConfigFile, overrides: dict[str, Any], output_root: Path,
            tracking_uri: str | None, console: Console) -> Outcome:
    folder = output_root / experiment.name
    start = time.perf_counter()
    record: dict[str, Any] = {"experiment": experiment.name, "status": "failed",
                              "started_at": datetime.now(UTC).isoformat(timespec="seconds")}
    run = None
    try:
        _prepare_folder(folder)
        config = build_config(experiment, config_file, overrides)
        record["config"] = config.model_dump(mode="json")
        _write_marker(folder, record)
        from liquid_shared.tracking import start_run

        console.rule(f"[bold]{experiment.name}[/bold]")
        with start_run(experiment.name, run_name=experiment.name, params=config.model_dump(mode="json"),
                       tags={"experiment": experiment.name}, tracking_uri=tracking_uri,
                       local_dir=folder / "tracking") as run:
            record.update(run_id=run.run_id, tracking_uri=run.tracking_uri)
            _write_marker(folder, record)
            ctx = RunContext(experiment.name, folder, run, console)
            try:
                result = experiment.run(config, ctx)
                if not isinstance(result, ExperimentResult):
                    raise TypeError(f"experiment returned {type(result).__name__}, not ExperimentResult")
                ctx.write_json(METRICS_FILE, result.metrics)
                if result.skipped:
                    ctx.write_json("skipped.json", result.skipped)
                run.log_metrics(_flat_metrics(result))
                run.log_metrics({"experiment.seconds": time.perf_counter() - start})
            except BaseException as exc:
                run.set_tags({"error": _message(exc)[:5000]})
                raise
        record.update(status="ok", variants=list(result.metrics), skipped=result.skipped, notes=result.notes)
        error = None
    except Exception as exc:  # one experiment's failure never stops the others
        error = _message(exc)
        record["error"] = error
        if not isinstance(exc, ExperimentFailed | FileNotFoundError | NotADirectoryError):
            record["traceback"] = traceback.format_exc()
            console.print_exception(max_frames=8)
        console.print(f"[red]{experiment.name} failed:[/red] {escape(error)}")
    seconds = time.perf_counter() - start
    record.update(seconds=round(seconds, 3), finished_at=datetime.now(UTC).isoformat(timespec="seconds"))
    if folder.is_dir():
        _write_marker(folder, record)
    return Outcome(experiment.name, record["status"], round(seconds, 3), str(folder), error,
                   record.get("run_id"), None if run is None else bool(run.mlflow_ok))


def _message(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, ExperimentFailed):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def write_summary(output_root: Path, outcomes: list[Outcome]) -> Path:
    """Merge this invocation's outcomes into ``<output-dir>/summary.json``."""
    path = output_root / SUMMARY_FILE
    summary: dict[str, Any] = {}
    if path.is_file():
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            summary = {}
    for outcome in outcomes:
        summary[outcome.name] = asdict(outcome)
    output_root.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return path


def run_experiments(experiments: list[Experiment], config_file: ConfigFile, overrides: dict[str, Any],
                    output_root: Path, tracking_uri: str | None = None, console: Console | None = None) -> list[Outcome]:
    """Run each experiment in turn and return their outcomes (failures included)."""
    console = console or Console(stderr=True, soft_wrap=True)
    outcomes = [run_one(e, config_file, overrides, output_root, tracking_uri, console) for e in experiments]
    write_summary(output_root, outcomes)
    return outcomes
