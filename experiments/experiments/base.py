"""What every experiment shares: its typed config, the context it runs in, and what it returns.

An experiment is a function ``run(config, ctx) -> ExperimentResult`` registered with a pydantic
config type (see ``registry``). The runner opens one MLflow run per experiment (the parent) and
hands the experiment a ``RunContext``; the experiment opens one nested run per variant with
``ctx.variant_run(...)`` and writes its files through the context, which puts each file both in
the run folder on disk (``<output-dir>/<experiment>/``) and in the MLflow run's artifacts.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.markup import escape

METRICS_FILE = "metrics.json"


class ExperimentConfig(BaseModel):
    """Settings every experiment has. Subclasses add their own fields (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, description="Seed for sampling, bootstrap resampling and subsampling (--seed).")


@dataclass
class ExperimentResult:
    """What an experiment returns: the mean of every metric per variant, and skipped variants.

    ``metrics`` becomes ``<output-dir>/<experiment>/metrics.json`` (``{variant: {metric: mean}}``)
    and the parent MLflow run's metrics (``<variant>.<metric>``).
    """

    metrics: dict[str, dict[str, float]]
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def json_safe(value: Any) -> Any:
    """Floats that JSON cannot hold (NaN, inf) become None; numpy scalars become Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunContext:
    """The folder, the MLflow run and the console of one experiment run."""

    def __init__(self, name: str, output_dir: Path, run: Any, console: Console):
        self.name = name
        self.output_dir = output_dir
        self.run = run
        self.console = console

    # files: on disk and in MLflow ----------------------------------------------------------------

    def path(self, relative: str) -> Path:
        """A path inside the experiment's run folder (parent folders created)."""
        target = self.output_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def _publish(self, path: Path) -> Path:
        rel = path.relative_to(self.output_dir)
        folder = rel.parent.as_posix()
        self.run.log_artifact(path, None if folder == "." else folder)
        return path

    def write_json(self, relative: str, obj: Any) -> Path:
        path = self.path(relative)
        path.write_text(json.dumps(json_safe(obj), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return self._publish(path)

    def write_text(self, relative: str, text: str) -> Path:
        path = self.path(relative)
        path.write_text(text, encoding="utf-8")
        return self._publish(path)

    def write_csv(self, relative: str, frame: Any) -> Path:
        path = self.path(relative)
        frame.to_csv(path, index=False)
        return self._publish(path)

    def write_plot(self, relative: str, draw: Callable[[Path], Any]) -> Path | None:
        """Call ``draw(path)`` (a ``liquid_shared.reporting.plot_*`` function) and publish the PNG.

        A plot that cannot be drawn (e.g. too few points) is reported, not fatal.
        """
        path = self.path(relative)
        try:
            draw(path)
        except (ValueError, KeyError) as exc:
            self.console.print(f"[yellow]{self.name}: plot {relative} skipped: {escape(str(exc))}[/yellow]")
            return None
        return self._publish(path)

    # nested MLflow runs ------------------------------------------------------------------------

    @contextlib.contextmanager
    def variant_run(self, variant: str, params: Mapping[str, Any] | None = None,
                    tags: Mapping[str, Any] | None = None) -> Iterator[Any]:
        """A nested MLflow run for one variant (its local copy goes under ``tracking/children``)."""
        from liquid_shared.tracking import start_run

        with start_run(self.name, run_name=f"{self.name}/{variant}", params=params, nested=True,
                       tags={"variant": variant, **(tags or {})}) as child:
            yield child

    # progress bars -------------------------------------------------------------------------------

    def progress(self) -> Any:
        """A rich progress display on the experiment's console (use as a context manager)."""
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        return Progress(TextColumn(f"[bold]{self.name}[/bold] {{task.description:<16}}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), console=self.console)

    def log_variant(self, variant: str, metrics: Mapping[str, float], params: Mapping[str, Any] | None = None,
                    extra_metrics: Mapping[str, float] | None = None) -> None:
        """One nested MLflow run for ``variant`` with its params and metrics (``metrics`` are the values
        of ``metrics.json``; ``extra_metrics`` go only to MLflow and the local copy)."""
        with self.variant_run(variant, params=params) as child:
            child.log_metrics({k: v for k, v in metrics.items() if v is not None and math.isfinite(v)})
            if extra_metrics:
                child.log_metrics({k: v for k, v in extra_metrics.items() if v is not None and math.isfinite(v)})
