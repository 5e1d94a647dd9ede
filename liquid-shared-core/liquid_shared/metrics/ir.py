"""Ranking metrics with trec_eval's definitions: Recall@K, Precision@K, MRR@K, MAP@K, nDCG@K.

Inputs are plain dicts: a ``Run`` maps query id -> {doc id: score}, ``Qrels`` maps query id ->
{doc id: graded relevance (int)}. ``evaluate(run, qrels, ["ndcg@10", "recall@100"])`` returns an
``IRResult`` with per-query scores and their means.

Conventions (trec_eval's; ranx with ``make_comparable=True`` agrees on all but the order of ties,
which its unstable sort leaves arbitrary):

* **Order.** A query's documents are ranked by score, highest first; equal scores are ordered by
  document id, *descending* (``strcmp``/code-point order), exactly as trec_eval does. The order of
  the run dict does not matter.
* **Relevant.** A document is relevant when its judgment is >= 1. Judgments <= 0 count as
  non-relevant and give no gain.
* **Query set.** Queries are the queries of ``qrels``, in qrels order. A query of the run that is not
  in qrels is ignored. A query of qrels with no run entry scores 0 on every metric and counts in the
  mean (trec_eval ``-c``; ranx ``make_comparable=True``).
* **No relevant documents.** A query whose judgments are all <= 0 scores 0 on every metric and
  counts in the mean (trec_eval and ranx both).
* **Cut-offs.** ``precision@k`` divides by k even when fewer than k documents were retrieved
  (trec_eval ``P_k``); ``map@k`` divides by the number of relevant documents of the query, not by
  min(k, R) (trec_eval ``map_cut_k``); ``ndcg@k`` uses the judgments themselves as gains
  (trec_eval ``ndcg_cut_k``, ranx ``ndcg``, Järvelin & Kekäläinen), a log2(rank + 1) discount, and
  the ideal ranking of all judged documents cut at k; ``mrr@k`` is 1/rank of the first relevant
  document when that rank is <= k, else 0 (trec_eval ``recip_rank`` on the run cut at k).
  Without ``@k`` (``"ndcg"``, ``"map"``, ``"mrr"``, ``"recall"``) the whole run counts.

Implementation: every one of these metrics depends only on the ranks of the relevant documents, so
we never build a ranked list of (doc, score) pairs: per query we sort the score values once (numpy)
and place each relevant document by binary search, resolving ties by document id. ``bench/bench_ir_metrics.py`` compares
the speed with ranx; ``tests/shared/test_ir_metrics.py`` checks the values against trec_eval
(pytrec_eval) and ranx.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]

METRIC_FAMILIES = ("ndcg", "recall", "precision", "mrr", "map")
DEFAULT_METRICS = ("ndcg@10", "recall@100", "precision@10", "mrr@10", "map@100")
_METRIC_RE = re.compile(r"^(?P<family>[a-z]+)(?:@(?P<k>\d+))?$")


@dataclass(frozen=True)
class MetricSpec:
    """A parsed metric name: family (``ndcg``...) and cut-off ``k`` (None = whole run)."""

    family: str
    k: int | None

    @property
    def name(self) -> str:
        return self.family if self.k is None else f"{self.family}@{self.k}"


def parse_metric(name: str) -> MetricSpec:
    """Parse ``"ndcg@10"``-style names (case-insensitive). Raises ValueError on unknown names."""
    if not isinstance(name, str):
        raise TypeError(f"metric name must be a string like 'ndcg@10', got {name!r}")
    match = _METRIC_RE.match(name.strip().lower())
    if match is None or match["family"] not in METRIC_FAMILIES:
        raise ValueError(
            f"unknown metric {name!r}; use one of {', '.join(METRIC_FAMILIES)} with an optional "
            "cut-off, e.g. 'ndcg@10', 'recall@100', 'precision@5', 'mrr@10', 'map@100'"
        )
    k = None if match["k"] is None else int(match["k"])
    if k is not None and k < 1:
        raise ValueError(f"metric {name!r}: the cut-off must be >= 1")
    if match["family"] == "precision" and k is None:
        raise ValueError(f"metric {name!r}: precision needs a cut-off, e.g. 'precision@10'")
    return MetricSpec(match["family"], k)


@dataclass
class IRResult:
    """Per-query scores and their means. ``per_query[metric]`` is ordered like ``query_ids``."""

    per_query: dict[str, dict[str, float]]
    mean: dict[str, float]
    query_ids: list[str] = field(default_factory=list)

    def scores(self, metric: str) -> np.ndarray:
        """The per-query scores of ``metric`` as an array aligned with ``query_ids``."""
        key = parse_metric(metric).name
        if key not in self.per_query:
            raise KeyError(f"metric {metric!r} was not computed; computed: {sorted(self.per_query)}")
        values = self.per_query[key]
        return np.fromiter((values[q] for q in self.query_ids), dtype=np.float64, count=len(self.query_ids))


def _ranked_hits(qid: str, docs: Mapping[str, float], relevant: dict[str, int]) -> list[tuple[int, int]]:
    """(rank, gain) of each relevant document of ``docs``, sorted by rank (1-based, trec_eval order)."""
    present = [(d, g) for d, g in relevant.items() if d in docs]
    if not present:
        return []
    n = len(docs)
    try:
        scores = np.fromiter(docs.values(), dtype=np.float64, count=n)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"run, query {qid!r}: every score must be a real number ({exc})") from None
    if not np.isfinite(scores).all():
        bad = next(d for d, s in docs.items() if not math.isfinite(float(s)))
        raise ValueError(f"run, query {qid!r}, document {bad!r}: score {docs[bad]!r} is not finite")
    scores.sort()
    hits = []
    for doc, gain in present:
        s = float(docs[doc])
        above = n - int(np.searchsorted(scores, s, side="right"))
        tied = n - above - int(np.searchsorted(scores, s, side="left"))
        if tied > 1:  # equal scores: trec_eval puts the larger document id first
            above += sum(1 for other, t in docs.items() if t == s and other > doc)
        hits.append((above + 1, gain))
    hits.sort()
    return hits


def _relevance(qid: str, judged: Mapping[str, int]) -> dict[str, int]:
    """The relevant documents (judgment >= 1) of one query, checking that judgments are integers."""
    if not isinstance(judged, Mapping):
        raise TypeError(f"qrels, query {qid!r}: expected a dict doc id -> relevance, got {type(judged).__name__}")
    relevant = {}
    for doc, rel in judged.items():
        if isinstance(rel, bool) or not isinstance(rel, int | np.integer):
            if isinstance(rel, float | np.floating) and float(rel).is_integer():
                rel = int(rel)
            else:
                raise ValueError(f"qrels, query {qid!r}, document {doc!r}: relevance {rel!r} is not an integer")
        if rel >= 1:
            relevant[doc] = int(rel)
    return relevant


def _discounts(n: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))


def _query_scores(specs: Sequence[MetricSpec], hits: list[tuple[int, int]], ideal: list[int]) -> list[float]:
    """All requested metrics for one query from its ranked hits and its ideal gains (descending)."""
    num_rel = len(ideal)
    out = []
    for spec in specs:
        if num_rel == 0:
            out.append(0.0)
            continue
        k = spec.k
        cut = hits if k is None else [h for h in hits if h[0] <= k]
        if spec.family == "precision":
            out.append(len(cut) / k)
        elif spec.family == "recall":
            out.append(len(cut) / num_rel)
        elif spec.family == "mrr":
            out.append(1.0 / cut[0][0] if cut else 0.0)
        elif spec.family == "map":
            out.append(sum((i + 1) / rank for i, (rank, _) in enumerate(cut)) / num_rel)
        else:  # ndcg
            dcg = sum(gain / math.log2(rank + 1) for rank, gain in cut)
            top = ideal if k is None else ideal[:k]
            idcg = float(np.dot(top, _discounts(len(top))))
            out.append(dcg / idcg if idcg > 0 else 0.0)
    return out


def evaluate(run: Mapping[str, Mapping[str, float]], qrels: Mapping[str, Mapping[str, int]],
             metrics: Iterable[str] = DEFAULT_METRICS) -> IRResult:
    """Score ``run`` against ``qrels`` with trec_eval's definitions (see the module docstring).

    ``metrics`` are names such as ``"ndcg@10"``, ``"recall@5"``, ``"precision@5"``, ``"mrr@10"``,
    ``"map@100"``; the result's keys are the lowercase names.
    """
    if isinstance(metrics, str):
        metrics = [metrics]
    specs = list(dict.fromkeys(parse_metric(m) for m in metrics))
    if not specs:
        raise ValueError("metrics is empty; name at least one, e.g. ['ndcg@10']")
    if not isinstance(run, Mapping):
        raise TypeError(f"run must be a dict query id -> {{doc id: score}}, got {type(run).__name__}")
    if not isinstance(qrels, Mapping):
        raise TypeError(f"qrels must be a dict query id -> {{doc id: relevance}}, got {type(qrels).__name__}")
    if not qrels:
        raise ValueError("qrels is empty: there are no queries to evaluate")

    query_ids = list(qrels)
    table = np.zeros((len(query_ids), len(specs)), dtype=np.float64)
    for row, qid in enumerate(query_ids):
        relevant = _relevance(qid, qrels[qid])
        docs = run.get(qid)
        if docs is None or not relevant:
            continue  # scores stay 0 (see "Query set" and "No relevant documents")
        if not isinstance(docs, Mapping):
            raise TypeError(f"run, query {qid!r}: expected a dict doc id -> score, got {type(docs).__name__}")
        hits = _ranked_hits(qid, docs, relevant)
        ideal = sorted(relevant.values(), reverse=True)
        table[row] = _query_scores(specs, hits, ideal)

    per_query = {s.name: dict(zip(query_ids, table[:, j].tolist(), strict=True)) for j, s in enumerate(specs)}
    mean = {s.name: float(table[:, j].mean()) for j, s in enumerate(specs)}
    return IRResult(per_query=per_query, mean=mean, query_ids=query_ids)
