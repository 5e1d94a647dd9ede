"""Paired comparison of systems on per-query scores (``liquid_shared.stats.compare``, Holm)."""

from __future__ import annotations

import pandas as pd

from liquid_lvm.evaluation.evaluate import SplitEvaluation


def per_query_scores(results: dict[str, SplitEvaluation], metric: str, step: int = 1) -> dict[str, dict[str, float]]:
    """``{system: {query: score}}`` at rollout ``step`` (queries aligned by their id)."""
    out = {}
    for name, ev in results.items():
        rows = ev.per_query[ev.per_query["step"] == step]
        out[name] = dict(zip(rows["query"], rows[metric].astype(float), strict=True))
    return out


def best_system(results: dict[str, SplitEvaluation], names: list[str], metric: str = "recall@10") -> str:
    return max(names, key=lambda n: results[n].summary()[metric if metric != "rr" else "mrr"])


def compare_with_baseline(results: dict[str, SplitEvaluation], baseline: str, metric: str = "recall@10",
                          step: int = 1, test: str = "permutation", n_boot: int = 2000, seed: int = 0,
                          alpha: float = 0.05) -> pd.DataFrame:
    """Every system against ``baseline`` on ``metric``: bootstrap CIs, paired test, Holm correction."""
    from liquid_shared.stats import compare

    df = compare(per_query_scores(results, metric, step), baseline=baseline, test=test, correction="holm",
                 n_boot=n_boot, seed=seed, alpha=alpha)
    df.insert(1, "metric", metric)
    df.insert(2, "step", step)
    return df
