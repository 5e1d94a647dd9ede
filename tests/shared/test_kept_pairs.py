"""Kept-pair precision, recall and yield against cases computed by hand."""

from __future__ import annotations

import math

import pytest

from liquid_shared.metrics import is_right, measure_kept_pairs


def test_is_right_uses_squad_token_f1_against_the_best_reference():
    assert is_right("Rollo", ["the Viking Rollo", "Rollo"])
    # "King Charles" vs "Charles III": one shared token of two each -> P = R = 1/2, F1 = 0.5
    assert is_right("King Charles", ["Charles III"])
    # "the King of the Franks" vs "Charles III": no shared token
    assert not is_right("the King of the Franks", ["Charles III"])
    assert not is_right("Rollo", [])
    assert not is_right("Rollo", ["  "])


def test_precision_recall_and_yield_by_hand():
    # five generated pairs over four chunks:
    #   pair  kept right   chunk
    #   0     yes  yes     c0
    #   1     yes  no      c0
    #   2     no   yes     c1
    #   3     yes  yes     c2
    #   4     no   no      c2      (c3 has no pair)
    kept = [True, True, False, True, False]
    right = [True, False, True, True, False]
    m = measure_kept_pairs(kept, right, kept_per_chunk=[2, 0, 1, 0], n_boot=500)
    assert m.precision.mean == pytest.approx(2 / 3) and m.precision.n == 3  # 2 right of 3 kept
    assert m.recall.mean == pytest.approx(2 / 3) and m.recall.n == 3  # 2 kept of 3 right
    assert m.yield_per_chunk.mean == pytest.approx(3 / 4) and m.yield_per_chunk.n == 4
    assert (m.generated, m.kept, m.right) == (5, 3, 3)
    assert 0 <= m.precision.low <= m.precision.mean <= m.precision.high <= 1


def test_degenerate_cases_have_no_interval():
    m = measure_kept_pairs([False, False], [True, False], kept_per_chunk=[0])
    assert m.precision.n == 0 and math.isnan(m.precision.mean)
    assert m.recall.mean == 0.0 and m.recall.n == 1 and math.isnan(m.recall.low)
    all_right = measure_kept_pairs([True, True], [True, True], kept_per_chunk=[2])
    assert all_right.precision.mean == all_right.precision.low == all_right.precision.high == 1.0


def test_inconsistent_inputs_are_refused():
    with pytest.raises(ValueError, match="one of each per generated pair"):
        measure_kept_pairs([True], [True, False], kept_per_chunk=[1])
    with pytest.raises(ValueError, match="kept_per_chunk sums to 0"):
        measure_kept_pairs([True], [True], kept_per_chunk=[0])
