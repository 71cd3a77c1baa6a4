"""analysis.stats against direct scipy / statsmodels computations and hand-computed cases."""
from __future__ import annotations

import itertools
import math
import zlib

import numpy as np
import pytest
from scipy.stats import wilcoxon
from statsmodels.stats.multitest import multipletests

from analysis.stats import (WilcoxonSettings, differences, friedman, hodges_lehmann, holm, holm_bounds, median_ci,
                            min_p_value, paired_wilcoxon, rank_biserial, signed_rank_sums)


def test_exact_p_for_six_agreeing_signs_is_the_floor():
    result = paired_wilcoxon([0.81, 0.72, 0.55, 0.45, 0.60, 0.70], [0.80, 0.70, 0.50, 0.40, 0.50, 0.60])
    assert result.n == 6 and result.W == 0.0
    assert result.p == pytest.approx(0.03125, abs=1e-12) == result.min_p
    assert result.rank_biserial == 1.0 and not result.p_unreachable

    five = paired_wilcoxon([1, 2, 3, 4, 5], [0, 0, 0, 0, 0])
    assert five.p == pytest.approx(0.0625) and five.min_p == pytest.approx(0.0625) and five.p_unreachable
    assert "unreachable" in "; ".join(five.notes)
    assert min_p_value(8) == pytest.approx(0.0078125) and min_p_value(6, "greater") == pytest.approx(1 / 64)


def synthetic_tables(rng, n, ties: bool, zeros: int):
    y = np.round(rng.uniform(0.2, 0.9, n), 4)
    step = rng.choice([-0.02, -0.01, 0.01, 0.02, 0.03], n) if ties else np.round(rng.normal(0, 0.02, n), 4)
    step[:zeros] = 0.0
    return np.round(y + step, 4), y


@pytest.mark.parametrize("zero_method,alternative,ties,zeros", [
    (z, a, t, k) for z, a, (t, k) in itertools.product(
        ("wilcox", "pratt", "zsplit"), ("two-sided", "greater", "less"), ((False, 0), (True, 0), (True, 2)))])
def test_matches_scipy_wilcoxon(zero_method, alternative, ties, zeros):
    rng = np.random.default_rng(zlib.crc32(f"{zero_method}{alternative}{ties}{zeros}".encode()))
    for n in (6, 11, 14):
        x, y = synthetic_tables(rng, n, ties, zeros)
        settings = WilcoxonSettings(zero_method=zero_method, alternative=alternative)
        ours = paired_wilcoxon(x, y, settings)
        direct = wilcoxon(np.round(x - y, 4), zero_method=zero_method, alternative=alternative, method="auto")
        assert ours.W == pytest.approx(float(direct.statistic), abs=1e-12)
        assert ours.p == pytest.approx(float(direct.pvalue), rel=1e-12)
        # scipy's statistic is min(R+, R-) two-sided and R+ one-sided: our rank sums must agree with it.
        expected_w = min(ours.r_plus, ours.r_minus) if alternative == "two-sided" else ours.r_plus
        assert ours.W == pytest.approx(expected_w)
        assert ours.n == n and ours.n_nonzero == n - int(np.sum(np.round(x - y, 4) == 0))


def test_unrounded_equals_scipy_on_two_samples():
    x, y = [3, 5, 8, 2, 9, 11, 4], [1, 6, 4, 2, 3, 6, 1]
    ours = paired_wilcoxon(x, y, WilcoxonSettings(decimals=None, method="exact", zero_method="wilcox"))
    direct = wilcoxon(x, y, method="exact")
    assert (ours.W, ours.p) == (float(direct.statistic), float(direct.pvalue))


def test_zero_difference_under_each_zero_method():
    d = np.array([0.0, 1.0, 2.0, -3.0, 4.0, 5.0])
    # wilcox drops the zero: ranks 1..5 of [1, 2, 3, 4, 5] → R+ = 1+2+4+5, R- = 3
    assert signed_rank_sums(d, "wilcox") == (12.0, 3.0)
    # pratt ranks the zero (rank 1) then drops it: ranks 2..6 → R+ = 2+3+5+6, R- = 4
    assert signed_rank_sums(d, "pratt") == (16.0, 4.0)
    # zsplit gives half the zero's rank to each side
    assert signed_rank_sums(d, "zsplit") == (16.5, 4.5)
    assert rank_biserial(d, "wilcox") == pytest.approx((12 - 3) / 15)
    for zero_method, (r_plus, r_minus) in (("wilcox", (12, 3)), ("pratt", (16, 4)), ("zsplit", (16.5, 4.5))):
        ours = paired_wilcoxon(d, np.zeros_like(d), WilcoxonSettings(zero_method=zero_method))
        direct = wilcoxon(d, zero_method=zero_method)
        assert ours.W == float(direct.statistic) == min(r_plus, r_minus)
        assert ours.p == pytest.approx(float(direct.pvalue))
        assert "1 zero difference" in "; ".join(ours.notes)


def test_all_zero_and_empty_differences_do_not_raise():
    same = paired_wilcoxon([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert same.n_nonzero == 0 and same.rank_biserial == 0.0 and same.p == 1.0
    assert "all differences are zero" in same.notes
    empty = paired_wilcoxon([], [])
    assert empty.n == 0 and math.isnan(empty.p) and math.isnan(empty.W)
    with pytest.raises(ValueError, match="NaN"):
        paired_wilcoxon([0.1, float("nan")], [0.2, 0.3])


def test_rounding_turns_float_noise_into_ties():
    d = differences([0.3, 0.7, 0.9], [0.1, 0.5, 0.7])
    assert d[0] == d[1] == d[2] == 0.2
    assert signed_rank_sums(d) == (6.0, 0.0)
    raw = differences([0.3, 0.7, 0.9], [0.1, 0.5, 0.7], decimals=None)
    assert len(set(raw.tolist())) > 1  # without rounding, float noise would rank equal differences apart


def test_rank_biserial_and_hodges_lehmann_by_hand():
    assert rank_biserial(np.array([1.0, 2.0, -3.0, 4.0])) == pytest.approx((7 - 3) / 10)
    assert hodges_lehmann(np.array([1.0, 2.0, 3.0])) == 2.0       # Walsh averages 1, 1.5, 2, 2, 2.5, 3
    assert hodges_lehmann(np.array([0.0, 0.0, 10.0])) == 2.5      # 0, 0, 5, 0, 5, 10


def test_holm_is_statsmodels_holm_not_its_default():
    p = [0.01, 0.04, 0.03]
    reject, adjusted = holm(p)
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06])      # hand: 3*0.01, max(2*0.03, 0.04), 0.06
    assert reject.tolist() == [True, False, False]
    np.testing.assert_allclose(adjusted, multipletests(p, method="holm")[1])
    assert not np.allclose(adjusted, multipletests(p)[1])          # statsmodels' default is Holm–Šidák
    reject, adjusted = holm([0.01, float("nan"), 0.04])
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)


def test_friedman_needs_three_designs():
    assert friedman(np.ones((5, 2))) is None
    statistic, p = friedman(np.array([[1, 2, 3], [1, 2, 3], [1, 3, 2], [1, 2, 3]], dtype=float))
    assert statistic > 0 and 0 < p < 1


def test_settings_name_the_valid_choices():
    with pytest.raises(ValueError, match="wilcox, pratt, zsplit"):
        WilcoxonSettings(zero_method="zero")
    with pytest.raises(ValueError, match="two-sided"):
        WilcoxonSettings(alternative="both")


def test_median_bootstrap_ci_is_reproducible_and_covers_the_median():
    d = np.array([0.01, 0.02, -0.005, 0.03, 0.0, 0.015, 0.012])
    low, high = median_ci(d)
    assert low <= np.median(d) <= high and low < high
    assert median_ci(d) == (low, high)                       # fixed bootstrap seed
    assert all(math.isnan(v) for v in median_ci(d[:2]))      # fewer than 3 datasets: no CI
    assert median_ci(np.full(4, 0.01)) == (0.01, 0.01)       # no spread
    result = paired_wilcoxon(d, np.zeros_like(d))
    assert (result.median_ci_low, result.median_ci_high) == (low, high)


def test_holm_of_the_floors_bounds_every_outcome():
    """The power screen's premise: Holm-adjusted p never decrease when a p grows, so Holm over each test's smallest
    attainable p is the best adjusted p it can ever get. Checked on random families against statsmodels."""
    rng = np.random.default_rng(11)
    for _ in range(25):   # statsmodels collects garbage on every call: slow
        n = rng.integers(3, 12, size=rng.integers(1, 15))
        floors = np.array([min_p_value(int(k)) for k in n])
        observed = np.minimum(1.0, floors + rng.exponential(0.05, size=n.size) * rng.integers(0, 2, size=n.size))
        best, actual = holm_bounds(floors), multipletests(observed, method="holm")[1]
        assert np.all(actual >= best - 1e-15)
        np.testing.assert_allclose(best, multipletests(floors, method="holm")[1], rtol=1e-15)  # same numbers
