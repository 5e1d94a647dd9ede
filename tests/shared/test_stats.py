"""liquid_shared.stats: agreement with scipy, hand-computed values, and hypothesis properties."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from liquid_shared import stats

RNG = np.random.default_rng(42)
A = RNG.random(40)
B = np.clip(A - 0.05 + RNG.normal(0, 0.1, 40), 0, 1)
C = RNG.random(35) * 0.9


def test_paired_t_agrees_with_scipy() -> None:
    ref = sps.ttest_rel(A, B)
    res = stats.paired_t_test(A, B)
    assert (res.statistic, res.p_value) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-12)
    ci = ref.confidence_interval(0.95)
    assert (res.ci_low, res.ci_high) == pytest.approx((ci.low, ci.high))
    d = A - B
    assert res.effect_size == pytest.approx(d.mean() / d.std(ddof=1))
    assert res.diff == pytest.approx(d.mean())
    assert stats.paired_t_test(A, B, alternative="greater").p_value == pytest.approx(
        sps.ttest_rel(A, B, alternative="greater").pvalue)


def test_welch_agrees_with_scipy() -> None:
    ref = sps.ttest_ind(A, C, equal_var=False)
    res = stats.welch_t_test(A, C)
    assert (res.statistic, res.p_value) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-12)
    pooled = math.sqrt((39 * A.var(ddof=1) + 34 * C.var(ddof=1)) / 73)
    assert res.effect_size == pytest.approx((A.mean() - C.mean()) / pooled)
    assert (res.n_a, res.n_b) == (40, 35)


def test_wilcoxon_agrees_with_scipy() -> None:
    ref = sps.wilcoxon(A, B)
    res = stats.wilcoxon_signed_rank(A, B)
    assert (res.statistic, res.p_value) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-12)


def test_mann_whitney_agrees_with_scipy() -> None:
    ref = sps.mannwhitneyu(A, C)
    res = stats.mann_whitney_u(A, C)
    assert (res.statistic, res.p_value) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-12)
    assert res.effect_size == pytest.approx(2 * ref.statistic / (40 * 35) - 1)


def test_benjamini_hochberg_agrees_with_scipy() -> None:
    p = [0.01, 0.04, 0.03, 0.005, 0.5]
    assert stats.benjamini_hochberg(p) == pytest.approx(sps.false_discovery_control(p, method="bh"))


def test_bootstrap_agrees_with_scipy() -> None:
    ref = sps.bootstrap((A,), np.mean, n_resamples=2000, method="BCa", rng=7, vectorized=True).confidence_interval
    ci = stats.bootstrap_ci(A, n_boot=2000, seed=7)
    assert (ci.low, ci.high) == pytest.approx((ref.low, ref.high))
    assert ci.estimate == pytest.approx(A.mean()) and ci.low < ci.estimate < ci.high
    paired = stats.paired_bootstrap_ci(A, B, n_boot=2000, seed=7, method="percentile")
    ref = sps.bootstrap((A - B,), np.mean, n_resamples=2000, method="percentile", rng=7).confidence_interval
    assert (paired.low, paired.high) == pytest.approx((ref.low, ref.high))


def test_permutation_is_exact_for_small_n() -> None:
    a, b = RNG.random(8), RNG.random(8)
    d = a - b
    observed = abs(d.mean())
    flips = [abs(np.mean(d * np.array(signs))) for signs in itertools.product([1, -1], repeat=8)]
    exact = sum(f >= observed - 1e-12 for f in flips) / len(flips)
    assert stats.permutation_test(a, b, n_resamples=10_000).p_value == pytest.approx(exact)


def test_holm_by_hand() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.6, 0.9]) == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        stats.holm([0.1, float("nan")])


def test_effect_sizes_by_hand() -> None:
    a, b = [3.0, 4.0, 5.0, 8.0], [1.0, 2.0, 2.0, 4.0]  # differences 2, 2, 3, 4
    assert stats.cohens_d_paired(a, b) == pytest.approx(2.75 / np.std([2, 2, 3, 4], ddof=1))
    assert stats.rank_biserial_paired(a, b) == 1.0
    assert stats.rank_biserial_paired([1, 2, 3], [2, 0, 3]) == pytest.approx((2 - 1) / 3)  # d = -1, +2, 0
    assert stats.rank_biserial([5, 6, 7], [1, 2, 3]) == 1.0
    assert stats.rank_biserial([1, 2, 3], [5, 6, 7]) == -1.0
    assert stats.cohens_d_pooled([1, 2, 3], [2, 3, 4]) == pytest.approx(-1.0)


def test_zero_variance_gives_the_limits() -> None:
    a, b = [1.0, 2.0, 3.0], [0.0, 1.0, 2.0]  # a constant difference of +1
    res = stats.paired_t_test(a, b)
    assert (res.statistic, res.p_value, res.effect_size) == (math.inf, 0.0, math.inf)
    assert stats.paired_t_test(a, b, alternative="greater").p_value == 0.0
    assert stats.paired_t_test(a, b, alternative="less").p_value == 1.0
    assert stats.welch_t_test([2.0, 2.0], [1.0, 1.0]).p_value == 0.0
    ci = stats.bootstrap_ci([0.5] * 10)
    assert (ci.low, ci.estimate, ci.high) == (0.5, 0.5, 0.5)


def test_input_errors() -> None:
    with pytest.raises(ValueError, match="a has 3 values, b has 2"):
        stats.paired_t_test([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="NaN or infinite"):
        stats.wilcoxon_signed_rank([1, float("nan"), 3], [1, 2, 3])
    with pytest.raises(ValueError, match="need at least 2"):
        stats.welch_t_test([1.0], [1.0, 2.0])


# compare --------------------------------------------------------------------------------------


def test_compare_table() -> None:
    base = RNG.random(60)
    scores = {"bm25": base, "better": np.clip(base + 0.1 + RNG.normal(0, 0.05, 60), 0, 2), "same": base.copy()}
    df = stats.compare(scores, "bm25", test="paired_t", correction="holm", n_boot=1000, seed=1)
    assert list(df.columns) == stats.COMPARE_COLUMNS
    assert list(df["system"]) == ["bm25", "better", "same"]
    rows = df.set_index("system")
    assert rows.loc["bm25", "is_baseline"] and math.isnan(rows.loc["bm25", "p_value"])
    assert rows.loc["better", "significant"] and rows.loc["better", "diff"] > 0.05
    assert rows.loc["better", "diff_ci_low"] > 0
    assert rows.loc["same", "p_value"] == 1.0 and not rows.loc["same", "significant"]
    raw = [rows.loc["better", "p_value"], rows.loc["same", "p_value"]]
    assert [rows.loc["better", "p_adjusted"], rows.loc["same", "p_adjusted"]] == pytest.approx(stats.holm(raw))
    assert rows.loc["better", "ci_low"] < rows.loc["better", "mean"] < rows.loc["better", "ci_high"]
    assert df.attrs["baseline"] == "bm25" and df.attrs["effect_measure"] == "cohens_d_z"


@pytest.mark.parametrize("test", ["paired_t", "wilcoxon", "permutation"])
def test_compare_aligns_per_query_dicts(test: str) -> None:
    ids = [f"q{i}" for i in range(30)]
    base, other = RNG.random(30), RNG.random(30)
    as_lists = stats.compare({"base": base, "x": other}, "base", test=test, correction="bh", n_boot=500)
    shuffled = dict(reversed(list(zip(ids, other, strict=True))))
    as_dicts = stats.compare({"base": dict(zip(ids, base, strict=True)), "x": shuffled}, "base", test=test,
                             correction="bh", n_boot=500)
    assert as_dicts.drop(columns="system").equals(as_lists.drop(columns="system"))


def test_compare_errors() -> None:
    with pytest.raises(KeyError, match="baseline 'nope'"):
        stats.compare({"a": [1, 2, 3]}, "nope")
    with pytest.raises(ValueError, match="system 'b' has 2 scores but the baseline 'a' has 3"):
        stats.compare({"a": [1, 2, 3], "b": [1, 2]}, "a")
    with pytest.raises(ValueError, match=r"system 'b': query ids differ .*1 missing"):
        stats.compare({"a": {"q1": 1, "q2": 2}, "b": {"q1": 1, "q3": 2}}, "a")
    with pytest.raises(ValueError, match="unknown test"):
        stats.compare({"a": [1, 2, 3]}, "a", test="anova")


# Properties ------------------------------------------------------------------------------------

scores_50 = st.lists(st.floats(0, 1, allow_nan=False), min_size=50, max_size=50).map(np.array)
quick = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# scipy warns that x + shift - x is "nearly identical" data; the result is still a tiny p-value
nearly_constant = pytest.mark.filterwarnings("ignore:Precision loss occurred in moment calculation")


@quick
@given(scores_50)
def test_identical_systems_give_p_one_and_no_effect(x: np.ndarray) -> None:
    for test in (stats.paired_t_test, stats.wilcoxon_signed_rank, stats.welch_t_test, stats.mann_whitney_u):
        res = test(x, x.copy())
        assert res.p_value == 1.0 and res.effect_size == 0.0, res
    res = stats.permutation_test(x, x.copy(), n_resamples=2000)
    assert res.p_value == 1.0 and res.effect_size == 0.0


@nearly_constant
@quick
@given(scores_50, st.floats(0.05, 1.0))
def test_constant_shift_is_detected_at_n_50(x: np.ndarray, shift: float) -> None:
    y = x + shift
    for test in (stats.paired_t_test, stats.wilcoxon_signed_rank):
        res = test(y, x)
        assert res.p_value < 0.05 and res.effect_size > 0, res
    res = stats.permutation_test(y, x, n_resamples=2000)
    assert res.p_value < 0.05 and res.diff > 0
    z = x + 1.0 + shift  # beyond the range of x: the unpaired tests see it too
    assert stats.welch_t_test(z, x).p_value < 0.05
    assert stats.mann_whitney_u(z, x).p_value < 0.05


@quick
@given(scores_50, scores_50)
def test_permutation_and_t_test_agree_in_direction(x: np.ndarray, y: np.ndarray) -> None:
    diff = float(np.mean(x - y))
    if abs(diff) < 1e-9:
        return
    t = stats.paired_t_test(x, y)
    perm = stats.permutation_test(x, y, n_resamples=1000)
    assert np.sign(t.statistic) == np.sign(perm.statistic) == np.sign(diff)
    assert np.sign(t.effect_size) == np.sign(perm.effect_size)
