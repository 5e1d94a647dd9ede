"""Bar charts of ``{variant: {metric: value}}`` (one panel per metric), matplotlib object API.

Per-query box plots and paired-difference plots come from ``liquid_shared.reporting``; this adds
the plain comparison of a few numbers per variant (costs, rates) that those do not cover.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path


def plot_metric_bars(metrics: Mapping[str, Mapping[str, float]], columns: Sequence[str], path: str | Path,
                     title: str | None = None, errors: Mapping[str, Mapping[str, float]] | None = None) -> Path:
    """One bar panel per metric in ``columns``; ``errors[variant][metric]`` draws +/- error bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = [c for c in columns if any(_finite(v.get(c)) for v in metrics.values())]
    if not columns:
        raise ValueError("no finite values to plot")
    names = list(metrics)
    fig = Figure(figsize=(max(4.0, 1.1 * len(names) + 1.5) * min(len(columns), 3) / 1.5,
                          3.2 * math.ceil(len(columns) / 3)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(math.ceil(len(columns) / 3), min(len(columns), 3), squeeze=False).ravel()
    for ax, column in zip(axes, columns, strict=False):
        values = [metrics[n].get(column) for n in names]
        heights = [v if _finite(v) else 0.0 for v in values]
        err = None
        if errors is not None:
            err = [errors.get(n, {}).get(column) or 0.0 for n in names]
        ax.bar(range(len(names)), heights, yerr=err, color="tab:blue", alpha=0.8, capsize=3)
        ax.set_xticks(range(len(names)), labels=names, rotation=30, ha="right", fontsize=8)
        ax.set_title(column, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        for i, v in enumerate(values):
            if _finite(v):
                ax.annotate(f"{v:.3g}", (i, heights[i]), ha="center", va="bottom", fontsize=7)
    for ax in axes[len(columns):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=120, bbox_inches="tight")
    return path


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
