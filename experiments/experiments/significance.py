"""Significance tables for the experiments, on top of ``liquid_shared.stats``.

* ``paired_table``: systems scored on the same queries (retrieval variants): a paired test of every
  system against the baseline, Holm (or BH) correction, effect sizes, bootstrap CIs; this is
  ``liquid_shared.stats.compare`` with the metric name attached.
* ``independent_table``: systems scored on *different* items (two fine-tuning sets, QA pairs of
  two ablation variants): Mann-Whitney U of every system against the baseline with rank-biserial
  effect sizes, a bootstrap CI of each mean and of the difference of means (items resampled
  independently in each group), the same correction. Same columns as ``compare`` so
  ``liquid_shared.reporting.comparison_table`` renders both.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

Correction = Literal["holm", "bh", "none"]
PairedTest = Literal["paired_t", "wilcoxon", "permutation"]
INDEPENDENT_TEST_LABEL = "Mann-Whitney U test"


def paired_table(scores: Mapping[str, Mapping[str, float] | Sequence[float]], baseline: str, *,
                 test: PairedTest = "paired_t", correction: Correction = "holm", n_boot: int = 10_000,
                 seed: int = 0, confidence: float = 0.95, alpha: float = 0.05, metric: str = "score") -> Any:
    """``liquid_shared.stats.compare`` on per-query scores, with a ``metric`` column."""
    from liquid_shared.stats import compare

    df = compare(scores, baseline, test=test, correction=correction, n_boot=n_boot, seed=seed,
                 confidence=confidence, alpha=alpha, n_resamples=n_boot)
    df.insert(0, "metric", metric)
    return df


def _diff_ci(a: np.ndarray, b: np.ndarray, n_boot: int, confidence: float, seed: int) -> tuple[float, float]:
    """Percentile bootstrap CI of mean(a) - mean(b), each group resampled on its own."""
    from scipy import stats as sps

    if (a == a[0]).all() and (b == b[0]).all():
        d = float(a[0] - b[0])
        return d, d
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sps.bootstrap((a, b), lambda x, y, axis=-1: np.mean(x, axis=axis) - np.mean(y, axis=axis),
                            n_resamples=n_boot, confidence_level=confidence, method="percentile",
                            vectorized=True, paired=False, rng=seed)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def independent_table(samples: Mapping[str, Sequence[float]], baseline: str, *, correction: Correction = "holm",
                      n_boot: int = 10_000, seed: int = 0, confidence: float = 0.95, alpha: float = 0.05,
                      metric: str = "score") -> Any:
    """Compare independent samples (one list of per-item scores per system) with the baseline's.

    Systems with fewer than two items cannot be tested: their p-value is NaN and they are never
    significant (their mean is still shown).
    """
    import pandas as pd

    from liquid_shared.stats import adjust_p_values, bootstrap_ci, mann_whitney_u

    if baseline not in samples:
        raise KeyError(f"baseline {baseline!r} is not among the systems {sorted(samples)}")
    arrays = {name: np.asarray(list(values), dtype=np.float64) for name, values in samples.items()}
    base = arrays[baseline]
    rows = []
    for name, values in arrays.items():
        row: dict[str, Any] = {"metric": metric, "system": name, "is_baseline": name == baseline, "n": int(values.size)}
        if values.size >= 2:
            ci = bootstrap_ci(values, n_boot=n_boot, confidence=confidence, seed=seed, method="percentile")
            row.update(mean=ci.estimate, ci_low=ci.low, ci_high=ci.high)
        else:
            mean = float(values.mean()) if values.size else math.nan
            row.update(mean=mean, ci_low=math.nan, ci_high=math.nan)
        if name == baseline:
            row.update(diff=0.0, diff_ci_low=0.0, diff_ci_high=0.0, p_value=math.nan, effect_size=math.nan)
        elif values.size >= 2 and base.size >= 2:
            res = mann_whitney_u(values, base)
            low, high = _diff_ci(values, base, n_boot, confidence, seed)
            row.update(diff=res.diff, diff_ci_low=low, diff_ci_high=high, p_value=res.p_value,
                       effect_size=res.effect_size)
        else:
            diff = row["mean"] - (float(base.mean()) if base.size else math.nan)
            row.update(diff=diff, diff_ci_low=math.nan, diff_ci_high=math.nan, p_value=math.nan,
                       effect_size=math.nan)
        rows.append(row)
    df = pd.DataFrame(rows)
    df["p_adjusted"] = math.nan
    testable = (~df["is_baseline"]) & df["p_value"].notna()
    if testable.any():
        df.loc[testable, "p_adjusted"] = adjust_p_values(df.loc[testable, "p_value"].to_numpy(), correction)
    df["significant"] = testable & (df["p_adjusted"] < alpha)
    df.attrs.update(baseline=baseline, test=INDEPENDENT_TEST_LABEL, correction=correction,
                    effect_measure="rank_biserial", confidence=confidence, alpha=alpha, n_boot=n_boot, seed=seed)
    return df


def tables_markdown(frames: Sequence[Any], fmt: Literal["markdown", "latex"] = "markdown",
                    caption_prefix: str = "") -> str:
    """One ``comparison_table`` per frame (one frame per metric), each under a heading."""
    from liquid_shared.reporting import comparison_table

    parts = []
    for df in frames:
        metric = str(df["metric"].iloc[0]) if "metric" in df.columns and len(df) else "score"
        if fmt == "markdown":
            parts.append(f"#### {metric}\n\n" + comparison_table(df, fmt="markdown", metric=metric))
        else:
            caption = f"{caption_prefix}{metric}." if caption_prefix else None
            parts.append(comparison_table(df, fmt="latex", metric=metric, caption=caption))
    return "\n".join(parts)


def adjust_family(frames: Sequence[Any], correction: Correction = "holm", alpha: float = 0.05) -> None:
    """Correct the p-values of every non-baseline row of ``frames`` as one family (in place).

    Use when several metrics are tested on the same systems: the family is every (metric, system)
    comparison, not just the systems of one metric.
    """
    from liquid_shared.stats import adjust_p_values

    slots = [(df, idx) for df in frames for idx in df.index[(~df["is_baseline"]) & df["p_value"].notna()]]
    if not slots:
        return
    adjusted = adjust_p_values(np.array([df.at[idx, "p_value"] for df, idx in slots]), correction)
    for (df, idx), p in zip(slots, adjusted, strict=True):
        df.at[idx, "p_adjusted"] = float(p)
        df.at[idx, "significant"] = bool(p < alpha)
    for df in frames:  # the tables' captions name the correction and the family it spans
        df.attrs.update(family_size=len(slots), correction=correction)
