"""Reports of a system comparison: a table (markdown or LaTeX) and matplotlib PNG plots.

``comparison_table(compare(...))`` shows, per system, the mean with its bootstrap CI, the
difference to the baseline with its CI, the corrected p-value (marked ``*`` when below alpha) and
the effect size; the test, correction and effect measure come from the DataFrame's ``attrs``,
which ``liquid_shared.stats.compare`` fills. The plots use matplotlib's object API (no pyplot
state), so they are safe in threads and servers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from liquid_shared.stats import align_scores

REQUIRED_COLUMNS = ("system", "is_baseline", "mean", "ci_low", "ci_high", "diff", "diff_ci_low", "diff_ci_high",
                    "p_adjusted", "effect_size", "significant")
_CORRECTION_LABEL = {"holm": "Holm", "bh": "BH", "none": "uncorrected"}
_EFFECT_LABEL = {"cohens_d_z": ("d_z", "$d_z$"), "rank_biserial": ("r_rb", "$r_{rb}$"), "cohens_d": ("d", "$d$")}
_TEST_LABEL = {"paired_t": "paired t-test", "wilcoxon": "Wilcoxon signed-rank test",
               "permutation": "paired permutation test"}
_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def _num(value: float, digits: int) -> str:
    return "nan" if math.isnan(value) else f"{value:.{digits}f}"


def _p_text(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def comparison_table(df: Any, fmt: Literal["markdown", "latex"] = "markdown", digits: int = 3,
                     metric: str | None = None, caption: str | None = None) -> str:
    """Render ``liquid_shared.stats.compare``'s DataFrame as a markdown or LaTeX (booktabs) table.

    ``metric`` names the score in the header (e.g. ``"nDCG@10"``); with ``fmt="latex"`` and a
    ``caption`` the tabular is wrapped in a ``table`` environment.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"comparison_table: the DataFrame lacks columns {missing}; "
                         "pass the DataFrame returned by liquid_shared.stats.compare")
    if fmt not in ("markdown", "latex"):
        raise ValueError(f"unknown fmt {fmt!r}; use 'markdown' or 'latex'")
    latex = fmt == "latex"
    attrs = df.attrs
    level = round(100 * attrs.get("confidence", 0.95))
    correction = _CORRECTION_LABEL.get(attrs.get("correction", ""), attrs.get("correction", "?"))
    effect_plain, effect_tex = _EFFECT_LABEL.get(attrs.get("effect_measure", ""), ("effect", "effect"))
    delta = r"$\Delta$" if latex else "Δ"
    score = metric or "score"
    pct = r"\%" if latex else "%"
    header = ["System", f"{latex_escape(score) if latex else score} mean [{level}{pct} CI]",
              f"{delta} vs baseline [{level}{pct} CI]", f"p ({correction})",
              f"effect ({effect_tex if latex else effect_plain})"]
    dash = "--" if latex else "—"
    star = "$^{*}$" if latex else "*"
    rows = []
    for rec in df.to_dict("records"):
        name = latex_escape(str(rec["system"])) if latex else str(rec["system"]).replace("|", r"\|")
        mean = f"{_num(rec['mean'], digits)} [{_num(rec['ci_low'], digits)}, {_num(rec['ci_high'], digits)}]"
        if rec["is_baseline"]:
            rows.append([f"{name} (baseline)", mean, dash, dash, dash])
            continue
        diff = (f"{rec['diff']:+.{digits}f} [{rec['diff_ci_low']:+.{digits}f}, "
                f"{rec['diff_ci_high']:+.{digits}f}]")
        p = _p_text(rec["p_adjusted"]) + (star if rec["significant"] else "")
        if latex:
            p = p.replace("<", "$<$")
        rows.append([name, mean, diff, p, _num(rec["effect_size"], 2)])
    test = _TEST_LABEL.get(attrs.get("test", ""), attrs.get("test", "test"))
    # p-values corrected over a larger family (several metrics, see experiments.significance.adjust_family)
    # carry its size in ``family_size``; otherwise the family is this table's comparisons
    family = int(attrs.get("family_size", (~df["is_baseline"]).sum()))
    comparisons = f"{family} comparison{'' if family == 1 else 's'}"
    corrected = (f"p-values not corrected ({comparisons})" if attrs.get("correction") == "none"
                 else f"p-values {correction}-corrected over {comparisons}")
    note = (f"{test}; {corrected}; "
            f"* p < {attrs.get('alpha', 0.05)}; CIs by bootstrap ({attrs.get('n_boot', '?')} resamples).")
    if latex:
        return _latex(header, rows, latex_escape(note).replace("<", "$<$"), caption)
    return _markdown(header, rows, note)


def _markdown(header: list[str], rows: list[list[str]], note: str) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + f"\n\n{note}\n"


def _latex(header: list[str], rows: list[list[str]], note: str, caption: str | None) -> str:
    body = [r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule", " & ".join(header) + r" \\",
            r"\midrule", *(" & ".join(r) + r" \\" for r in rows), r"\bottomrule", r"\end{tabular}"]
    if caption is None:
        return "\n".join(body) + f"\n% {note}\n"
    return "\n".join([r"\begin{table}[t]", r"\centering", *body,
                      rf"\caption{{{latex_escape(caption)} {note}}}", r"\end{table}"]) + "\n"


# Plots -----------------------------------------------------------------------------------------


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"plot path {path} must end in .png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=120, bbox_inches="tight")
    return path


def _values(scores: Mapping[str, Sequence[float] | Mapping[str, float]]) -> dict[str, np.ndarray]:
    if not scores:
        raise ValueError("scores is empty; give at least one system")
    out = {}
    for name, vals in scores.items():
        arr = np.asarray(list(vals.values()) if isinstance(vals, Mapping) else vals, dtype=np.float64)
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"scores[{name!r}] must be a non-empty list of per-query scores")
        out[name] = arr
    return out


def plot_per_query(scores: Mapping[str, Sequence[float] | Mapping[str, float]], path: str | Path,
                   metric: str = "score", title: str | None = None) -> Path:
    """Box plot of each system's per-query scores with the individual queries as jittered dots."""
    data = _values(scores)
    names = list(data)
    fig = _figure(max(4.0, 1.3 * len(names) + 1.5), 4.0)
    ax = fig.add_subplot()
    ax.boxplot([data[n] for n in names], showmeans=True, widths=0.5)
    ax.set_xticks(range(1, len(names) + 1), labels=names, rotation=20 if len(names) > 4 else 0)
    rng = np.random.default_rng(2024)  # fixed jitter: the same scores give the same picture
    for i, n in enumerate(names, start=1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, data[n].size), data[n], s=6, alpha=0.35, color="tab:blue")
    ax.set_ylabel(metric)
    ax.set_title(title or f"Per-query {metric} ({data[names[0]].size} queries)")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_paired_differences(scores: Mapping[str, Sequence[float] | Mapping[str, float]], baseline: str,
                            path: str | Path, metric: str = "score", title: str | None = None) -> Path:
    """Per-query differences (system - baseline), sorted, one panel per system, with their mean."""
    if baseline not in scores:
        raise KeyError(f"baseline {baseline!r} is not among the systems {sorted(scores)}")
    arrays = align_scores(scores, baseline)
    others = [n for n in arrays if n != baseline]
    if not others:
        raise ValueError("plot_paired_differences needs at least one system besides the baseline")
    fig = _figure(7.0, 2.4 * len(others) + 0.6)
    axes = fig.subplots(len(others), 1, squeeze=False)[:, 0]
    for ax, name in zip(axes, others, strict=True):
        diff = np.sort(arrays[name] - arrays[baseline])
        colors = np.where(diff > 0, "tab:green", np.where(diff < 0, "tab:red", "tab:gray"))
        ax.bar(np.arange(diff.size), diff, width=1.0, color=colors)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.axhline(diff.mean(), color="tab:blue", linestyle="--", linewidth=1,
                   label=f"mean {diff.mean():+.3f}")
        wins, losses = int((diff > 0).sum()), int((diff < 0).sum())
        ax.set_title(f"{name} - {baseline}: {wins} better, {losses} worse, {diff.size - wins - losses} tied",
                     fontsize=9)
        ax.set_ylabel(f"Δ {metric}")
        ax.set_xticks([])
        ax.legend(loc="upper left", fontsize=8)
    axes[-1].set_xlabel("queries, sorted by difference")
    if title:
        fig.suptitle(title)
    return _save(fig, path)
