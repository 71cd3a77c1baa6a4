"""Power of the Wilcoxon signed-rank test: exact critical values and the minimum detectable effect (MDE).

The MDE is the smallest shift of normally distributed paired differences, in units of their standard deviation
(Cohen's d_z), that the test detects with the requested power at a given level and number of tasks. It depends only
on n, the level and the alternative, so it can be stated before any score is seen.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

EXACT_MAX_N = 50   # scipy.stats.wilcoxon(method="auto") is exact up to here (without ties/zeros), then asymptotic


@lru_cache(maxsize=None)
def signed_rank_null(n: int) -> np.ndarray:
    """Probabilities of R+ = 0 .. n(n+1)/2 under H0 (every sign pattern equally likely), by counting subsets."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for rank in range(1, n + 1):
        counts[rank:] = counts[rank:] + counts[:-rank].copy()
    return counts / 2.0 ** n


def critical_values(n: int, alpha: float, alternative: str = "two-sided") -> tuple[float, float]:
    """(low, high): the test rejects at level alpha (p < alpha) iff R+ <= low or R+ >= high.

    Exact for n <= 50 (as scipy's method="auto" without ties), normal approximation without continuity correction
    above. A side that can never reject is -1 (low) or N + 1 (high), N = n(n+1)/2."""
    total = n * (n + 1) // 2
    if n == 0:
        return -1.0, 1.0
    tails = {"two-sided": 2.0, "greater": 1.0, "less": 1.0}[alternative]
    if n <= EXACT_MAX_N:
        cdf = np.cumsum(signed_rank_null(n))
        # p of R+ = c in the lower tail is tails * P(R+ <= c); by symmetry the upper tail mirrors it.
        below = np.nonzero(tails * cdf < alpha)[0]
        c = float(below[-1]) if below.size else -1.0
    else:
        from scipy.stats import norm

        mean, sd = total / 2, math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
        c = math.ceil(mean + sd * norm.ppf(alpha / tails)) - 1.0
    low, high = c, total - c
    if alternative == "greater":
        low = -1.0
    elif alternative == "less":
        high = total + 1.0
    return low, high


def rejection_rate(n: int, shift: float, alpha: float, alternative: str = "two-sided", sims: int = 10000,
                   seed: int = 0) -> float:
    """Monte-Carlo power at a standardised shift: differences ~ N(shift, 1). Common random numbers (fixed seed)
    make the estimate non-decreasing in ``shift`` (R+ equals the number of positive Walsh averages, which a shift
    can only increase)."""
    low, high = critical_values(n, alpha, alternative)
    z = np.random.default_rng(seed).standard_normal((sims, n)) + shift
    ranks = np.argsort(np.argsort(np.abs(z), axis=1), axis=1) + 1     # no ties: continuous draws
    r_plus = (ranks * (z > 0)).sum(axis=1)
    return float(np.mean((r_plus <= low) | (r_plus >= high)))


@lru_cache(maxsize=256)
def minimum_detectable_effect(n: int, alpha: float, power: float = 0.8, alternative: str = "two-sided",
                              sims: int = 10000) -> float:
    """Smallest d_z >= 0 with power >= ``power`` (bisection to 0.001); inf if no shift reaches it (too few tasks
    for any outcome to reach p < alpha). For ``alternative="less"`` the shift is negative; its size is returned."""
    if n == 0:
        return math.inf
    low, high = critical_values(n, alpha, alternative)
    total = n * (n + 1) // 2
    if low < 0 and high > total:
        return math.inf
    sign = -1.0 if alternative == "less" else 1.0

    def enough(shift: float) -> bool:
        return rejection_rate(n, sign * shift, alpha, alternative, sims) >= power

    lo, hi = 0.0, 1.0
    while not enough(hi):
        lo, hi = hi, hi * 2
        if hi > 64:
            return math.inf
    while hi - lo > 1e-3:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return hi
