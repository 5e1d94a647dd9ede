"""Agreement between reviewers and the accuracy of a verdict against a reference, with bootstrap CIs.

* ``cohen_kappa(a, b)``: Cohen's kappa of two raters over the items both rated,
  ``(p_o - p_e) / (1 - p_e)`` with ``p_e`` from each rater's own label shares (Cohen 1960).
* ``krippendorff_alpha(units)``: Krippendorff's alpha for nominal data, any number of raters,
  missing ratings allowed: ``1 - (n - 1) * D_o / sum_{c != k} n_c n_k`` from the coincidence matrix
  (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability"); units with fewer than two
  ratings do not count.
* ``verdict_accuracy(predicted, reference)``: precision, recall and F1 of "accept" and the
  confusion table.
* ``bootstrap(items, statistic)``: a percentile interval over items resampled with replacement
  (the unit of resampling is the QA pair).

Both agreement numbers are checked against scikit-learn's ``cohen_kappa_score`` and the
``krippendorff`` package in the tests. A statistic that is undefined (one label only, no pairable
unit) is ``nan``, never a made-up 0 or 1.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np

DEFAULT_BOOT = 2000
POSITIVE = "accept"


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa needs two rating lists of equal length, got {len(a)} and {len(b)}")
    n = len(a)
    if n == 0:
        return math.nan
    p_o = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    p_e = sum(ca[c] * cb[c] for c in set(ca) | set(cb)) / (n * n)
    if p_e == 1:
        return math.nan
    return (p_o - p_e) / (1 - p_e)


def krippendorff_alpha(units: Sequence[Sequence[Hashable]]) -> float:
    """``units``: for each item, the ratings it got (any number; ``None`` entries are dropped)."""
    coincidence: Counter = Counter()
    for ratings in units:
        values = [r for r in ratings if r is not None]
        m = len(values)
        if m < 2:
            continue
        for i, j in ((i, j) for i in range(m) for j in range(m) if i != j):
            coincidence[(values[i], values[j])] += 1 / (m - 1)
    n_c: Counter = Counter()
    for (c, _), w in coincidence.items():
        n_c[c] += w
    n = sum(n_c.values())
    if n <= 1:
        return math.nan
    observed = sum(w for (c, k), w in coincidence.items() if c != k)
    expected = sum(n_c[c] * n_c[k] for c in n_c for k in n_c if c != k)
    if expected == 0:
        return math.nan
    return 1 - (n - 1) * observed / expected


def verdict_accuracy(predicted: Sequence[str], reference: Sequence[str]) -> dict[str, Any]:
    """``predicted`` and ``reference`` as ``"accept"`` / ``"reject"`` per item; "accept" is positive."""
    if len(predicted) != len(reference):
        raise ValueError(f"verdict_accuracy needs equal lengths, got {len(predicted)} and {len(reference)}")
    tp = sum(p == POSITIVE and r == POSITIVE for p, r in zip(predicted, reference, strict=True))
    fp = sum(p == POSITIVE and r != POSITIVE for p, r in zip(predicted, reference, strict=True))
    fn = sum(p != POSITIVE and r == POSITIVE for p, r in zip(predicted, reference, strict=True))
    tn = len(predicted) - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    if math.isnan(precision) or math.isnan(recall):
        f1 = math.nan
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"n": len(predicted), "precision": precision, "recall": recall, "f1": f1,
            "reject_recall": tn / (tn + fp) if tn + fp else math.nan,
            "confusion": {"accept_accept": tp, "accept_reject": fp, "reject_accept": fn, "reject_reject": tn}}


def bootstrap(items: Sequence[Any], statistic: Callable[[Sequence[Any]], float], n_boot: int = DEFAULT_BOOT,
              confidence: float = 0.95, seed: int = 0) -> dict[str, float]:
    """``{"estimate", "low", "high"}``: percentile bootstrap of ``statistic`` over ``items``; resamples
    where the statistic is undefined (nan) are dropped, and the interval is nan when all are."""
    estimate = statistic(items)
    if len(items) < 2:
        return {"estimate": estimate, "low": math.nan, "high": math.nan}
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        picks = rng.integers(0, len(items), len(items))
        v = statistic([items[i] for i in picks])
        if not math.isnan(v):
            values.append(v)
    if not values:
        return {"estimate": estimate, "low": math.nan, "high": math.nan}
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return {"estimate": estimate, "low": float(low), "high": float(high)}


def pairwise_kappas(ratings: Mapping[str, Mapping[str, str]], n_boot: int = DEFAULT_BOOT) -> list[dict[str, Any]]:
    """Cohen's kappa with its CI for every two raters of ``ratings`` (rater -> item -> label) over
    the items both rated."""
    out = []
    for r1, r2 in combinations(sorted(ratings), 2):
        shared = sorted(set(ratings[r1]) & set(ratings[r2]))
        pairs = [(ratings[r1][i], ratings[r2][i]) for i in shared]
        ci = bootstrap(pairs, lambda ps: cohen_kappa([p[0] for p in ps], [p[1] for p in ps]), n_boot)
        out.append({"raters": [r1, r2], "n": len(shared), "kappa": ci["estimate"], "low": ci["low"], "high": ci["high"],
                    "observed_agreement": sum(a == b for a, b in pairs) / len(pairs) if pairs else math.nan})
    return out


def alpha_with_ci(ratings: Mapping[str, Mapping[str, str]], n_boot: int = DEFAULT_BOOT) -> dict[str, Any]:
    """Krippendorff's alpha over every rater of ``ratings``, CI by resampling items."""
    items = sorted({i for by_item in ratings.values() for i in by_item})
    units = [[ratings[r].get(i) for r in sorted(ratings)] for i in items]
    units = [u for u in units if sum(v is not None for v in u) >= 2]
    ci = bootstrap(units, krippendorff_alpha, n_boot)
    return {"n_items": len(units), "raters": len(ratings), "alpha": ci["estimate"], "low": ci["low"], "high": ci["high"]}
