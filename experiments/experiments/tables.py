"""Tables of ``{variant: {metric: value}}`` in markdown and LaTeX (booktabs), for reports and papers."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal


def _cell(value: object, digits: int) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if value != 0 and (abs(value) >= 10_000 or abs(value) < 10 ** -digits):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value)


def _latex_escape(text: str) -> str:
    from liquid_shared.reporting import latex_escape

    return latex_escape(text)


def metrics_table(metrics: Mapping[str, Mapping[str, object]], columns: Sequence[str] | None = None, *,
                  fmt: Literal["markdown", "latex"] = "markdown", digits: int = 3, row_header: str = "variant",
                  caption: str | None = None) -> str:
    """One row per variant, one column per metric (the union of the variants' metrics by default)."""
    if fmt not in ("markdown", "latex"):
        raise ValueError(f"unknown fmt {fmt!r}; use 'markdown' or 'latex'")
    if columns is None:
        columns = list(dict.fromkeys(m for values in metrics.values() for m in values))
    rows = [[name, *(_cell(values.get(c), digits) for c in columns)] for name, values in metrics.items()]
    header = [row_header, *columns]
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * len(columns)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines) + "\n"
    body = [r"\begin{tabular}{l" + "r" * len(columns) + "}", r"\toprule",
            " & ".join(_latex_escape(h) for h in header) + r" \\", r"\midrule",
            *(" & ".join(_latex_escape(c) for c in r) + r" \\" for r in rows), r"\bottomrule", r"\end{tabular}"]
    if caption is None:
        return "\n".join(body) + "\n"
    return "\n".join([r"\begin{table}[t]", r"\centering", *body, rf"\caption{{{_latex_escape(caption)}}}",
                      r"\end{table}"]) + "\n"
