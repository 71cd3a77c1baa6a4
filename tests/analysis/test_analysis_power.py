"""analysis.power: exact signed-rank critical values against scipy, and the minimum detectable effect by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm, wilcoxon

from analysis.power import critical_values, minimum_detectable_effect, rejection_rate, signed_rank_null


def differences_with_r_plus(n: int, r_plus: int) -> np.ndarray:
    """Distinct magnitudes 1..n, the ranks summing to r_plus made positive (greedy from the largest rank)."""
    d, left = -np.arange(1.0, n + 1), r_plus
    for rank in range(n, 0, -1):
        if rank <= left:
            d[rank - 1], left = rank, left - rank
    assert left == 0
    return d


def test_null_distribution_is_the_exact_one():
    for n in (1, 4, 9):
        null = signed_rank_null(n)
        assert null.sum() == pytest.approx(1.0) and len(null) == n * (n + 1) // 2 + 1
        np.testing.assert_allclose(null, null[::-1])            # symmetric
    assert signed_rank_null(3).tolist() == pytest.approx([1 / 8, 1 / 8, 1 / 8, 2 / 8, 1 / 8, 1 / 8, 1 / 8])


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
@pytest.mark.parametrize("n,alpha", [(6, 0.05), (8, 0.05), (8, 0.05 / 6), (12, 0.01), (20, 0.05), (30, 0.001)])
def test_critical_values_are_where_scipy_exact_p_crosses_alpha(n, alpha, alternative):
    low, high = critical_values(n, alpha, alternative)
    total = n * (n + 1) // 2

    def p(r_plus):
        return float(wilcoxon(differences_with_r_plus(n, r_plus), alternative=alternative, method="exact").pvalue)

    if alternative != "greater":     # lower tail rejects
        assert low >= 0 and p(int(low)) < alpha and p(int(low) + 1) >= alpha
    if alternative != "less":        # upper tail rejects
        assert high <= total and p(int(high)) < alpha and p(int(high) - 1) >= alpha


def test_asymptotic_critical_value_above_fifty():
    n, alpha = 60, 0.05
    low, high = critical_values(n, alpha)
    mean, sd = n * (n + 1) / 4, math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
    z = lambda r: (r - mean) / sd   # noqa: E731
    assert 2 * norm.cdf(z(low)) < alpha <= 2 * norm.cdf(z(low + 1))
    assert high == n * (n + 1) / 2 - low


def test_five_tasks_can_never_reject_at_five_percent():
    assert critical_values(5, 0.05) == (-1.0, 16.0)
    assert minimum_detectable_effect(5, 0.05) == math.inf
    assert minimum_detectable_effect(6, 0.05 / 2) == math.inf     # 2/2^6 = 0.031 > 0.025
    assert rejection_rate(5, 3.0, 0.05) == 0.0


def test_mde_at_six_tasks_by_hand():
    # n = 6, two-sided 0.05: only "all six signs agree" rejects, so power(δ) = Φ(δ)^6 + Φ(−δ)^6.
    mde = minimum_detectable_effect(6, 0.05, power=0.8)
    exact = float(norm.ppf(0.8 ** (1 / 6)))              # Φ(−δ)^6 is negligible there (< 1e-9)
    assert mde == pytest.approx(exact, abs=0.03)          # 10,000 simulations: power ± 0.004 → δ ± ~0.02
    for shift in (1.0, 2.0):
        expected = norm.cdf(shift) ** 6 + norm.cdf(-shift) ** 6
        assert rejection_rate(6, shift, 0.05) == pytest.approx(expected, abs=4 * math.sqrt(expected / 10000))


def test_mde_for_many_tasks_matches_the_asymptotic_relative_efficiency():
    # For normal differences the signed-rank test needs π/3 times the t-test's n: δ ≈ (z_{1-α/2} + z_β) / √(3n/π).
    n = 40
    approx = (norm.ppf(0.975) + norm.ppf(0.8)) / math.sqrt(3 * n / math.pi)
    assert minimum_detectable_effect(n, 0.05) == pytest.approx(approx, rel=0.06)
    assert minimum_detectable_effect(n, 0.05) < minimum_detectable_effect(n, 0.005) < minimum_detectable_effect(
        12, 0.005)


def test_rejection_rate_equals_scipy_on_the_same_draws():
    n, alpha, shift, sims = 9, 0.05, 0.7, 400
    z = np.random.default_rng(0).standard_normal((sims, n))
    direct = np.mean([wilcoxon(row, method="exact").pvalue < alpha for row in z + shift])
    assert rejection_rate(n, shift, alpha, sims=sims, seed=0) == direct
    one_sided = np.mean([wilcoxon(row, method="exact", alternative="less").pvalue < alpha for row in z - shift])
    assert rejection_rate(n, -shift, alpha, "less", sims=sims, seed=0) == one_sided
