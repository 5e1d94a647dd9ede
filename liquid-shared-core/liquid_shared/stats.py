"""Significance tests, effect sizes, bootstrap intervals and multiple-comparison corrections for
comparing systems on per-query scores, with scipy underneath.

Tests take two samples ``a`` and ``b`` (``a`` is the system, ``b`` the baseline; paired tests need
equal lengths, one score per query in the same order) and return a ``SignificanceResult`` whose
``diff`` and ``effect_size`` are positive when ``a`` scores higher.

Degenerate inputs get the limits of the formulas rather than scipy's NaN: when every paired
difference is zero (identical systems), statistic and effect are 0 and p = 1; when the differences
are one non-zero constant, the t statistic and d_z are +/-inf and p = 0.

``compare(scores, baseline)`` runs one test per system against the baseline, corrects the p-values
(Holm or Benjamini-Hochberg) and returns a tidy ``pandas.DataFrame``; ``liquid_shared.reporting``
turns it into a table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from scipy import stats as sps

Alternative = Literal["two-sided", "greater", "less"]
PairedTest = Literal["paired_t", "wilcoxon", "permutation"]
Correction = Literal["holm", "bh", "none"]


@dataclass(frozen=True)
class SignificanceResult:
    """Outcome of one two-sample test. ``ci_low``/``ci_high`` bound the mean difference (t-tests only,
    NaN otherwise); ``n_a``/``n_b`` are the sample sizes (equal for paired tests)."""

    test: str
    statistic: float
    p_value: float
    effect_size: float
    effect_measure: str
    diff: float
    ci_low: float = math.nan
    ci_high: float = math.nan
    n_a: int = 0
    n_b: int = 0

    def to_dict(self) -> dict[str, float | str | int]:
        return asdict(self)


@dataclass(frozen=True)
class ConfidenceInterval:
    estimate: float
    low: float
    high: float
    confidence: float
    method: str


def _as_array(values: Sequence[float] | np.ndarray, name: str, min_n: int = 2) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a sequence of numbers ({exc})") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size < min_n:
        raise ValueError(f"{name} has {arr.size} value(s); need at least {min_n}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values (first at index {int(np.argmin(np.isfinite(arr)))})")
    return arr


def _paired(a, b) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_array(a, "a"), _as_array(b, "b")
    if x.size != y.size:
        raise ValueError(f"paired samples need equal lengths: a has {x.size} values, b has {y.size}")
    return x, y


def _signed_inf(value: float) -> float:
    return math.copysign(math.inf, value) if value != 0 else 0.0


def _zero_variance_p(diff: float, alternative: Alternative) -> float:
    """p-value when the data have no spread: 1 without a difference; else 0 if the difference lies
    in the direction tested, 1 if it lies against it."""
    if diff == 0:
        return 1.0
    if alternative == "two-sided" or (alternative == "greater") == (diff > 0):
        return 0.0
    return 1.0


# Effect sizes ----------------------------------------------------------------------------------


def cohens_d_paired(a, b) -> float:
    """Cohen's d_z: mean of the paired differences over their standard deviation (ddof=1)."""
    x, y = _paired(a, b)
    d = x - y
    sd = float(d.std(ddof=1))
    return float(d.mean()) / sd if sd > 0 else _signed_inf(float(d.mean()))


def cohens_d_pooled(a, b) -> float:
    """Cohen's d for independent samples: mean difference over the pooled standard deviation."""
    x, y = _as_array(a, "a"), _as_array(b, "b")
    nx, ny = x.size, y.size
    pooled = math.sqrt(((nx - 1) * x.var(ddof=1) + (ny - 1) * y.var(ddof=1)) / (nx + ny - 2))
    diff = float(x.mean() - y.mean())
    return diff / pooled if pooled > 0 else _signed_inf(diff)


def rank_biserial_paired(a, b) -> float:
    """Matched-pairs rank-biserial correlation (T+ - T-) / (T+ + T-) over the non-zero differences."""
    x, y = _paired(a, b)
    d = x - y
    d = d[d != 0]
    if d.size == 0:
        return 0.0
    ranks = sps.rankdata(np.abs(d))
    plus, minus = ranks[d > 0].sum(), ranks[d < 0].sum()
    return float((plus - minus) / (plus + minus))


def rank_biserial(a, b) -> float:
    """Rank-biserial correlation for independent samples: 2 U_a / (n_a n_b) - 1 (in [-1, 1])."""
    x, y = _as_array(a, "a", 1), _as_array(b, "b", 1)
    u_a = sps.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic").statistic
    return float(2 * u_a / (x.size * y.size) - 1)


# Tests -----------------------------------------------------------------------------------------


def paired_t_test(a, b, alternative: Alternative = "two-sided", confidence: float = 0.95) -> SignificanceResult:
    """Paired (dependent) t-test (scipy ``ttest_rel``); effect size Cohen's d_z."""
    x, y = _paired(a, b)
    d = x - y
    mean, sd, n = float(d.mean()), float(d.std(ddof=1)), d.size
    if sd == 0:
        p = _zero_variance_p(mean, alternative)
        return SignificanceResult("paired_t", _signed_inf(mean), p, _signed_inf(mean), "cohens_d_z", mean,
                                  mean, mean, n, n)
    res = sps.ttest_rel(x, y, alternative=alternative)
    ci = res.confidence_interval(confidence)
    return SignificanceResult("paired_t", float(res.statistic), float(res.pvalue), mean / sd, "cohens_d_z",
                              mean, float(ci.low), float(ci.high), n, n)


def welch_t_test(a, b, alternative: Alternative = "two-sided", confidence: float = 0.95) -> SignificanceResult:
    """Welch's unequal-variance t-test (scipy ``ttest_ind(equal_var=False)``); effect size pooled Cohen's d."""
    x, y = _as_array(a, "a"), _as_array(b, "b")
    diff = float(x.mean() - y.mean())
    if x.var() == 0 and y.var() == 0:
        p = _zero_variance_p(diff, alternative)
        return SignificanceResult("welch_t", _signed_inf(diff), p, _signed_inf(diff), "cohens_d", diff,
                                  diff, diff, x.size, y.size)
    res = sps.ttest_ind(x, y, equal_var=False, alternative=alternative)
    ci = res.confidence_interval(confidence)
    return SignificanceResult("welch_t", float(res.statistic), float(res.pvalue), cohens_d_pooled(x, y), "cohens_d",
                              diff, float(ci.low), float(ci.high), x.size, y.size)


def wilcoxon_signed_rank(a, b, alternative: Alternative = "two-sided",
                         zero_method: Literal["wilcox", "pratt", "zsplit"] = "wilcox") -> SignificanceResult:
    """Wilcoxon signed-rank test (scipy ``wilcoxon``); effect size matched-pairs rank-biserial."""
    x, y = _paired(a, b)
    d = x - y
    if not d.any():
        return SignificanceResult("wilcoxon", 0.0, 1.0, 0.0, "rank_biserial", 0.0, n_a=d.size, n_b=d.size)
    res = sps.wilcoxon(x, y, zero_method=zero_method, alternative=alternative)
    return SignificanceResult("wilcoxon", float(res.statistic), float(res.pvalue), rank_biserial_paired(x, y),
                              "rank_biserial", float(d.mean()), n_a=d.size, n_b=d.size)


def mann_whitney_u(a, b, alternative: Alternative = "two-sided") -> SignificanceResult:
    """Mann-Whitney U test (scipy ``mannwhitneyu``; statistic = U of ``a``); effect size rank-biserial."""
    x, y = _as_array(a, "a", 1), _as_array(b, "b", 1)
    diff = float(x.mean() - y.mean())
    both = np.concatenate([x, y])
    if (both == both[0]).all():
        return SignificanceResult("mann_whitney_u", x.size * y.size / 2, 1.0, 0.0, "rank_biserial", diff,
                                  n_a=x.size, n_b=y.size)
    res = sps.mannwhitneyu(x, y, alternative=alternative)
    effect = float(2 * res.statistic / (x.size * y.size) - 1)
    return SignificanceResult("mann_whitney_u", float(res.statistic), float(res.pvalue), effect, "rank_biserial",
                              diff, n_a=x.size, n_b=y.size)


def _mean_paired_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x - y, axis=axis)


def permutation_test(a, b, n_resamples: int = 10_000, seed: int | None = 0,
                     alternative: Alternative = "two-sided") -> SignificanceResult:
    """Paired permutation (Fisher randomisation) test of the mean difference: each pair's sign is
    flipped at random (scipy ``permutation_test``, ``permutation_type="samples"``; exact when
    2**n <= n_resamples). Effect size Cohen's d_z."""
    x, y = _paired(a, b)
    d = x - y
    if not d.any():
        return SignificanceResult("permutation", 0.0, 1.0, 0.0, "cohens_d_z", 0.0, n_a=d.size, n_b=d.size)
    res = sps.permutation_test((x, y), _mean_paired_diff, permutation_type="samples", vectorized=True,
                               n_resamples=n_resamples, alternative=alternative, rng=seed)
    return SignificanceResult("permutation", float(res.statistic), float(res.pvalue), cohens_d_paired(x, y),
                              "cohens_d_z", float(d.mean()), n_a=d.size, n_b=d.size)


def bootstrap_ci(values, n_boot: int = 10_000, confidence: float = 0.95, seed: int | None = 0,
                 method: Literal["bca", "percentile", "basic"] = "bca",
                 statistic: Callable[..., np.ndarray] = np.mean) -> ConfidenceInterval:
    """Bootstrap confidence interval of ``statistic`` (default the mean) over ``values`` (scipy
    ``bootstrap``). Constant data give a zero-width interval; where BCa is undefined (too few
    distinct values) the percentile interval is returned and ``method`` says so."""
    x = _as_array(values, "values")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    estimate = float(statistic(x))
    if (x == x[0]).all():
        return ConfidenceInterval(estimate, estimate, estimate, confidence, method)
    scipy_method = {"bca": "BCa", "percentile": "percentile", "basic": "basic"}[method]
    ci = _scipy_bootstrap(x, statistic, n_boot, confidence, seed, scipy_method)
    if method == "bca" and not (math.isfinite(ci[0]) and math.isfinite(ci[1])):
        method = "percentile"
        ci = _scipy_bootstrap(x, statistic, n_boot, confidence, seed, "percentile")
    return ConfidenceInterval(estimate, ci[0], ci[1], confidence, method)


def _scipy_bootstrap(x, statistic, n_boot, confidence, seed, method) -> tuple[float, float]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # BCa on degenerate resamples; handled by the caller
        warnings.simplefilter("ignore", sps.DegenerateDataWarning)
        res = sps.bootstrap((x,), statistic, n_resamples=n_boot, confidence_level=confidence, method=method,
                            rng=seed, vectorized=True)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_bootstrap_ci(a, b, n_boot: int = 10_000, confidence: float = 0.95, seed: int | None = 0,
                        method: Literal["bca", "percentile", "basic"] = "bca") -> ConfidenceInterval:
    """Bootstrap interval of the mean paired difference ``a - b`` (queries resampled with replacement)."""
    x, y = _paired(a, b)
    return bootstrap_ci(x - y, n_boot=n_boot, confidence=confidence, seed=seed, method=method)


# Multiple comparisons --------------------------------------------------------------------------


def _p_array(p_values) -> np.ndarray:
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_values must be one-dimensional, got shape {p.shape}")
    if p.size and (not np.isfinite(p).all() or (p < 0).any() or (p > 1).any()):
        raise ValueError(f"p_values must lie in [0, 1] without NaN, got {p.tolist()}")
    return p


def holm(p_values) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values (family-wise error), in the input order."""
    p = _p_array(p_values)
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out


def benjamini_hochberg(p_values) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), scipy ``false_discovery_control``."""
    p = _p_array(p_values)
    return sps.false_discovery_control(p, method="bh") if p.size else p


def adjust_p_values(p_values, method: Correction = "holm") -> np.ndarray:
    if method == "holm":
        return holm(p_values)
    if method == "bh":
        return benjamini_hochberg(p_values)
    if method == "none":
        return _p_array(p_values).copy()
    raise ValueError(f"unknown correction {method!r}; use 'holm', 'bh' or 'none'")


# compare ---------------------------------------------------------------------------------------

COMPARE_COLUMNS = ["system", "is_baseline", "n", "mean", "ci_low", "ci_high", "diff", "diff_ci_low",
                   "diff_ci_high", "p_value", "p_adjusted", "effect_size", "significant"]


def align_scores(scores: Mapping[str, Sequence[float] | Mapping[str, float]],
                 baseline: str) -> dict[str, np.ndarray]:
    """Arrays per system; dict values (query id -> score) are aligned on the baseline's query ids."""
    base = scores[baseline]
    keys = list(base) if isinstance(base, Mapping) else None
    out = {}
    for name, values in scores.items():
        if isinstance(values, Mapping):
            if keys is None:
                raise TypeError(f"system {name!r} has per-query dict scores but the baseline has a list; use one kind")
            missing = [k for k in keys if k not in values]
            extra = len(values) - (len(keys) - len(missing))
            if missing or extra:
                raise ValueError(f"system {name!r}: query ids differ from the baseline's ({len(missing)} missing, "
                                 f"e.g. {missing[:3]}; {extra} extra)")
            values = [values[k] for k in keys]
        elif keys is not None:
            raise TypeError(f"system {name!r} has a list of scores but the baseline has a dict; use one kind")
        out[name] = _as_array(values, f"scores[{name!r}]")
    n = out[baseline].size
    for name, arr in out.items():
        if arr.size != n:
            raise ValueError(f"system {name!r} has {arr.size} scores but the baseline {baseline!r} has {n}; "
                             "paired comparison needs one score per query for every system")
    return out


_TESTS: dict[str, Callable[..., SignificanceResult]] = {
    "paired_t": lambda a, b, n_resamples, seed: paired_t_test(a, b),
    "wilcoxon": lambda a, b, n_resamples, seed: wilcoxon_signed_rank(a, b),
    "permutation": lambda a, b, n_resamples, seed: permutation_test(a, b, n_resamples=n_resamples, seed=seed),
}
EFFECT_MEASURES = {"paired_t": "cohens_d_z", "wilcoxon": "rank_biserial", "permutation": "cohens_d_z"}


def compare(scores: Mapping[str, Sequence[float] | Mapping[str, float]], baseline: str,
            test: PairedTest = "paired_t", correction: Correction = "holm", n_boot: int = 10_000,
            seed: int | None = 0, confidence: float = 0.95, alpha: float = 0.05,
            n_resamples: int = 10_000):
    """Compare every system with ``baseline`` on paired per-query scores; one row per system.

    ``scores`` maps system name -> per-query scores (a list in a common query order, or a dict
    query id -> score, aligned on the baseline's ids). Columns: ``system, is_baseline, n, mean,
    ci_low, ci_high`` (bootstrap CI of the mean), ``diff, diff_ci_low, diff_ci_high`` (mean paired
    difference to the baseline and its bootstrap CI), ``p_value`` (``test``), ``p_adjusted``
    (``correction`` over the non-baseline systems), ``effect_size`` (d_z for t and permutation,
    rank-biserial for Wilcoxon), ``significant`` (p_adjusted < alpha). The baseline row has
    diff 0 and NaN p-values. Settings are kept in ``df.attrs``.
    """
    import pandas as pd

    if test not in _TESTS:
        raise ValueError(f"unknown test {test!r}; use one of {sorted(_TESTS)}")
    if correction not in ("holm", "bh", "none"):
        raise ValueError(f"unknown correction {correction!r}; use 'holm', 'bh' or 'none'")
    if baseline not in scores:
        raise KeyError(f"baseline {baseline!r} is not among the systems {sorted(scores)}")
    arrays = align_scores(scores, baseline)
    base = arrays[baseline]
    rows = []
    for name, values in arrays.items():
        ci = bootstrap_ci(values, n_boot=n_boot, confidence=confidence, seed=seed)
        row = {"system": name, "is_baseline": name == baseline, "n": values.size, "mean": ci.estimate,
               "ci_low": ci.low, "ci_high": ci.high}
        if name == baseline:
            row.update(diff=0.0, diff_ci_low=0.0, diff_ci_high=0.0, p_value=math.nan, effect_size=math.nan)
        else:
            dci = paired_bootstrap_ci(values, base, n_boot=n_boot, confidence=confidence, seed=seed)
            res = _TESTS[test](values, base, n_resamples, seed)
            row.update(diff=dci.estimate, diff_ci_low=dci.low, diff_ci_high=dci.high, p_value=res.p_value,
                       effect_size=res.effect_size)
        rows.append(row)
    df = pd.DataFrame(rows)
    others = ~df["is_baseline"]
    df["p_adjusted"] = math.nan
    if others.any():
        df.loc[others, "p_adjusted"] = adjust_p_values(df.loc[others, "p_value"].to_numpy(), correction)
    df["significant"] = others & (df["p_adjusted"] < alpha)
    df = df[COMPARE_COLUMNS]
    df.attrs.update(baseline=baseline, test=test, correction=correction, effect_measure=EFFECT_MEASURES[test],
                    confidence=confidence, alpha=alpha, n_boot=n_boot, seed=seed)
    return df
