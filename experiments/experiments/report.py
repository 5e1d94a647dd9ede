"""The ``report`` command: stored experiment runs -> paper-ready tables (markdown, LaTeX) and figures.

A stored run is a run folder written by ``run`` (``<output-dir>/<experiment>/`` with
``experiment.json`` and ``metrics.json``), or an MLflow parent run whose artifacts hold the same
files (``--run-id``). For each experiment:

* ``<experiment>.md`` / ``<experiment>.tex``: the ``{variant: {metric: mean}}`` table;
* experiments with per-query scores (``per_query.csv``, i.e. rag_quality): for each ``--metric``
  the significance table against the run's baseline (recomputed with the run's own test,
  correction and seed) and the per-query and paired-difference figures;
* the others: a bar figure of the chosen metrics.

``report.md`` in the output folder links everything.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

DEFAULT_RAG_METRICS = ["ndcg@10"]
MAX_BAR_METRICS = 6


class ReportError(ValueError):
    """Nothing to report, or a stored run cannot be read; the message says which and why."""


@dataclass
class StoredRun:
    name: str
    folder: Path
    record: dict[str, Any]
    metrics: dict[str, dict[str, float]]
    origin: str


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: cannot be read ({exc})") from None


def runs_on_disk(root: Path, names: list[str] | None) -> list[StoredRun]:
    if not root.is_dir():
        raise ReportError(f"output folder {root} does not exist; run experiments first or pass --input")
    found = []
    for marker in sorted(root.glob("*/experiment.json")):
        folder = marker.parent
        record = _read_json(marker)
        name = record.get("experiment", folder.name)
        if names and name not in names:
            continue
        if record.get("status") != "ok" or not (folder / "metrics.json").is_file():
            continue
        found.append(StoredRun(name, folder, record, _read_json(folder / "metrics.json"), str(folder)))
    return found


def runs_from_mlflow(run_ids: list[str], uri: str | None, scratch: Path) -> list[StoredRun]:
    from mlflow import MlflowClient

    from liquid_shared.tracking import resolve_tracking_uri

    client = MlflowClient(tracking_uri=resolve_tracking_uri(uri))
    found = []
    for run_id in run_ids:
        try:
            run = client.get_run(run_id)
            folder = Path(client.download_artifacts(run_id, "", str(scratch / run_id)))
        except Exception as exc:
            raise ReportError(f"MLflow run {run_id}: cannot be read from {resolve_tracking_uri(uri)} ({exc})") from None
        name = run.data.tags.get("experiment") or client.get_experiment(run.info.experiment_id).name
        if not (folder / "metrics.json").is_file():
            raise ReportError(f"MLflow run {run_id} ({name}) has no metrics.json artifact (did it finish?)")
        params = run.data.params
        record = {"experiment": name, "run_id": run_id, "config": _config_from_params(params)}
        found.append(StoredRun(name, folder, record, _read_json(folder / "metrics.json"), f"mlflow:{run_id}"))
    return found


def _config_from_params(params: dict[str, str]) -> dict[str, Any]:
    out = {}
    for key, value in params.items():
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _same_columns(metrics: dict[str, dict[str, float]]) -> list[dict[str, dict[str, float]]]:
    """Variants split into groups that share the same metrics (dual_pipeline's pipelines, its ratios
    and its agreement figures each get their own table instead of one sparse one)."""
    groups: dict[tuple[str, ...], dict[str, dict[str, float]]] = {}
    for variant, values in metrics.items():
        groups.setdefault(tuple(values), {})[variant] = values
    return list(groups.values())


def _slug(metric: str) -> str:
    return metric.replace("@", "_at_")


def _rag_significance(run: StoredRun, metrics: list[str], out: Path) -> tuple[list[str], list[Path]]:
    """Significance tables and figures from per_query.csv; returns (markdown parts, files)."""
    import pandas as pd

    from experiments.significance import paired_table
    from liquid_shared.reporting import comparison_table, plot_paired_differences, plot_per_query

    per_query = pd.read_csv(run.folder / "per_query.csv", dtype={"query_id": str})
    config = run.record.get("config", {})
    baseline = config.get("baseline", "bm25")
    variants = list(dict.fromkeys(per_query["variant"]))
    parts: list[str] = []
    files: list[Path] = []
    for metric in metrics:
        if metric not in per_query.columns:
            raise ReportError(f"{run.origin}: metric {metric!r} is not in per_query.csv "
                              f"(columns: {[c for c in per_query.columns if c not in ('variant', 'query_id')]})")
        scores = {v: dict(zip(g["query_id"], g[metric], strict=True)) for v, g in per_query.groupby("variant", sort=False)}
        scores = {v: scores[v] for v in variants}
        if baseline in scores and len(scores) > 1:
            df = paired_table(scores, baseline, test=config.get("test", "paired_t"),
                              correction=config.get("correction", "holm"), n_boot=int(config.get("n_boot", 10_000)),
                              seed=int(config.get("seed", 0)), confidence=float(config.get("confidence", 0.95)),
                              alpha=float(config.get("alpha", 0.05)), metric=metric)
            md = comparison_table(df, fmt="markdown", metric=metric)
            tex = comparison_table(df, fmt="latex", metric=metric, caption=f"{run.name}: {metric} against {baseline}.")
            (out / f"{run.name}_{_slug(metric)}_significance.md").write_text(md, encoding="utf-8")
            tex_path = out / f"{run.name}_{_slug(metric)}_significance.tex"
            tex_path.write_text(tex, encoding="utf-8")
            files += [out / f"{run.name}_{_slug(metric)}_significance.md", tex_path]
            parts += [f"### {metric} against {baseline}", "", md]
            figure = plot_paired_differences(scores, baseline, out / f"{run.name}_{_slug(metric)}_differences.png",
                                             metric=metric)
            files.append(figure)
            parts.append(f"![{metric} differences]({figure.name})\n")
        figure = plot_per_query(scores, out / f"{run.name}_{_slug(metric)}_per_query.png", metric=metric)
        files.append(figure)
        parts.append(f"![{metric} per query]({figure.name})\n")
    return parts, files


def build_report(root: Path, *, names: list[str] | None = None, metrics: list[str] | None = None,
                 out: Path | None = None, mlflow_uri: str | None = None, run_ids: list[str] | None = None,
                 console: Console | None = None) -> list[Path]:
    """Write the report for the stored runs; returns the files written."""
    from experiments.plots import plot_metric_bars
    from experiments.tables import metrics_table

    console = console or Console(stderr=True, soft_wrap=True)
    out = (out or root / "report").expanduser().resolve()
    with tempfile.TemporaryDirectory(prefix="experiments-report-") as scratch:
        runs = runs_from_mlflow(run_ids, mlflow_uri, Path(scratch)) if run_ids else runs_on_disk(root, names)
        if not runs:
            which = f" for {', '.join(names)}" if names else ""
            raise ReportError(f"no finished experiment runs{which} under {root} (each needs experiment.json with "
                              "status ok and metrics.json)")
        out.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        sections = ["# Experiment report", ""]
        for run in runs:
            columns = None
            if metrics:
                present = {m for values in run.metrics.values() for m in values}
                columns = [m for m in metrics if m in present] or None
            groups = _same_columns(run.metrics) if columns is None else [run.metrics]
            md = "\n".join(metrics_table(group, columns) for group in groups)
            tex = "\n".join(metrics_table(group, columns, fmt="latex", caption=f"{run.name}: mean per variant.")
                             for group in groups)
            for suffix, text in ((".md", md), (".tex", tex)):
                path = out / f"{run.name}{suffix}"
                path.write_text(text, encoding="utf-8")
                written.append(path)
            sections += [f"## {run.name}", "", f"Source: `{run.origin}`", "", md]
            if (run.folder / "per_query.csv").is_file():
                parts, files = _rag_significance(run, metrics or DEFAULT_RAG_METRICS, out)
                sections += parts
                written += files
            else:
                chosen = columns or list(dict.fromkeys(m for v in run.metrics.values() for m in v))[:MAX_BAR_METRICS]
                try:
                    figure = plot_metric_bars(run.metrics, chosen, out / f"{run.name}_metrics.png", title=run.name)
                except ValueError as exc:
                    console.print(f"[yellow]{run.name}: no figure ({escape(str(exc))})[/yellow]")
                else:
                    written.append(figure)
                    sections.append(f"![{run.name}]({figure.name})\n")
        summary = out / "report.md"
        summary.write_text("\n".join(sections) + "\n", encoding="utf-8")
        written.append(summary)
    return written
