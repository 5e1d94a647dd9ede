"""Precision, recall and yield of a validator that keeps or drops generated QA pairs.

A generated pair is **right** when its answer has token F1 >= ``RIGHT_F1`` (SQuAD's F1, max over
the references) with a human answer of its passage; the references come from people, never from
the generator or the validator being measured. Then, over the generated pairs:

* **precision**: of the kept pairs, the share that is right;
* **recall**: of the right pairs, the share that was kept;
* **yield**: kept pairs per chunk (over every chunk, kept pairs or not).

Each comes with a 95 % percentile bootstrap interval over its own units (kept pairs, right pairs,
chunks) and its n; with fewer than two units the interval is NaN and the mean is the one value,
or NaN with none (None in ``to_dict``). The ETL's calibration and a review of pages both use this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from liquid_shared.metrics.generation import token_f1

RIGHT_F1 = 0.5


def is_right(answer: str, references: Sequence[str], threshold: float = RIGHT_F1) -> bool:
    """Token F1 of ``answer`` with its best reference reaches ``threshold`` (False with no reference)."""
    refs = [r for r in references if r.strip()]
    return bool(refs) and token_f1(answer, refs) >= threshold


@dataclass(frozen=True)
class Estimate:
    mean: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict[str, float | int | None]:
        """JSON-ready: rounded, with None where a value is undefined (NaN)."""
        return {k: (v if not isinstance(v, float) else round(v, 4) if math.isfinite(v) else None)
                for k, v in asdict(self).items()}


def estimate(values: Sequence[float], n_boot: int = 2000, seed: int = 0) -> Estimate:
    """Mean of ``values`` with a 95 % percentile bootstrap interval."""
    from liquid_shared.stats import bootstrap_ci

    vals = [float(v) for v in values]
    if len(vals) < 2:
        return Estimate(vals[0] if vals else math.nan, math.nan, math.nan, len(vals))
    ci = bootstrap_ci(vals, n_boot=n_boot, seed=seed, method="percentile")
    return Estimate(ci.estimate, ci.low, ci.high, len(vals))


@dataclass(frozen=True)
class KeptPairMeasure:
    precision: Estimate
    recall: Estimate
    yield_per_chunk: Estimate
    generated: int
    kept: int
    right: int

    def to_dict(self) -> dict[str, object]:
        return {"precision": self.precision.to_dict(), "recall": self.recall.to_dict(),
                "yield": self.yield_per_chunk.to_dict(), "generated": self.generated, "kept": self.kept,
                "right": self.right}


def measure_kept_pairs(kept: Sequence[bool], right: Sequence[bool], kept_per_chunk: Sequence[int],
                       n_boot: int = 2000, seed: int = 0) -> KeptPairMeasure:
    """Precision, recall and yield from one verdict pair per generated pair (``kept[i]``, ``right[i]``)
    and the number of kept pairs of every chunk (``kept_per_chunk``, chunks without pairs included)."""
    if len(kept) != len(right):
        raise ValueError(f"kept has {len(kept)} verdicts and right has {len(right)}: one of each per generated pair")
    if sum(kept_per_chunk) != sum(map(bool, kept)):
        raise ValueError(f"kept_per_chunk sums to {sum(kept_per_chunk)} but {sum(map(bool, kept))} pairs are kept")
    precision = estimate([float(r) for k, r in zip(kept, right, strict=True) if k], n_boot, seed)
    recall = estimate([float(k) for k, r in zip(kept, right, strict=True) if r], n_boot, seed)
    return KeptPairMeasure(precision, recall, estimate([float(c) for c in kept_per_chunk], n_boot, seed),
                           generated=len(kept), kept=sum(map(bool, kept)), right=sum(map(bool, right)))
