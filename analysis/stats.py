"""Paired tests across datasets: Wilcoxon signed-rank (scipy), Holm (statsmodels), rank-biserial, Friedman.

scipy gives W and p; the effect size needs R+ and R- separately (scipy returns only one of them), so the signed
ranks are recomputed here with the same zero handling scipy applies.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from analysis.errors import OptionError

ALTERNATIVES = ("two-sided", "greater", "less")
ZERO_METHODS = ("wilcox", "pratt", "zsplit")
METHODS = ("auto", "exact", "asymptotic", "approx")


@dataclass(frozen=True)
class WilcoxonSettings:
    """How every paired test of one analysis is run (reported verbatim in report.md)."""

    alpha: float = 0.05
    alternative: str = "two-sided"   # of candidate − reference
    zero_method: str = "wilcox"      # wilcox: drop zero differences | pratt | zsplit
    method: str = "auto"             # scipy: exact for n ≤ 50 without ties/zeros, else permutation/asymptotic
    correction: bool = False         # continuity correction, asymptotic branch only
    decimals: int | None = 4         # differences rounded before ranking, so float noise creates no ranks

    def __post_init__(self):
        for name, value, valid in (("alternative", self.alternative, ALTERNATIVES),
                                   ("zero_method", self.zero_method, ZERO_METHODS),
                                   ("method", self.method, METHODS)):
            if value not in valid:
                raise OptionError(f"unknown {name} '{value}'; valid: {', '.join(valid)}")
        if not 0 < self.alpha < 1:
            raise OptionError(f"alpha must be in (0, 1), got {self.alpha}")


@dataclass
class PairedResult:
    n: int                    # paired datasets
    n_nonzero: int            # differences that are not zero (after rounding)
    W: float                  # scipy's statistic: min(R+, R-) two-sided, R+ one-sided
    p: float
    r_plus: float
    r_minus: float
    rank_biserial: float      # (R+ − R-) / (R+ + R-), in [-1, 1]; > 0: candidate better
    median_diff: float
    median_ci_low: float      # 95% percentile-bootstrap CI of the median difference over datasets (n ≥ 3)
    median_ci_high: float
    mean_diff: float
    hodges_lehmann: float     # median of the Walsh averages of the differences
    min_p: float              # smallest p an exact test can give with these n: 2/2^n two-sided, 1/2^n one-sided
    p_unreachable: bool       # min_p ≥ alpha: no outcome could be significant
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        row = asdict(self)
        row["notes"] = "; ".join(self.notes)
        return row


def differences(x, y, decimals: int | None = 4) -> np.ndarray:
    d = np.asarray(x, dtype=float) - np.asarray(y, dtype=float)
    return np.round(d, decimals) if decimals is not None else d


def signed_rank_sums(d: np.ndarray, zero_method: str = "wilcox") -> tuple[float, float]:
    """R+ and R- of the differences, treating zeros as scipy's ``zero_method`` does."""
    from scipy.stats import rankdata

    d = np.asarray(d, dtype=float)
    if zero_method == "wilcox":
        d = d[d != 0]
    if d.size == 0:
        return 0.0, 0.0
    ranks = rankdata(np.abs(d))
    r_plus, r_minus = float(ranks[d > 0].sum()), float(ranks[d < 0].sum())
    if zero_method == "zsplit":
        half_zero = float(ranks[d == 0].sum()) / 2
        r_plus, r_minus = r_plus + half_zero, r_minus + half_zero
    return r_plus, r_minus


def rank_biserial(d: np.ndarray, zero_method: str = "wilcox") -> float:
    r_plus, r_minus = signed_rank_sums(d, zero_method)
    total = r_plus + r_minus
    return (r_plus - r_minus) / total if total > 0 else 0.0


def hodges_lehmann(d: np.ndarray) -> float:
    d = np.asarray(d, dtype=float)
    if d.size == 0:
        return math.nan
    i, j = np.triu_indices(d.size)
    return float(np.median((d[i] + d[j]) / 2))


def median_ci(d: np.ndarray, confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap over datasets (fixed seed: the same tables give the same CI); NaN below 3 datasets."""
    from scipy.stats import bootstrap

    d = np.asarray(d, dtype=float)
    if d.size < 3 or np.all(d == d[0]):
        return (float(d[0]), float(d[0])) if d.size >= 3 else (math.nan, math.nan)
    result = bootstrap((d,), np.median, confidence_level=confidence, n_resamples=resamples, method="percentile",
                       rng=np.random.default_rng(seed), vectorized=True)
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def min_p_value(n: int, alternative: str = "two-sided") -> float:
    """Floor of the exact signed-rank p with n non-zero differences (all signs agreeing)."""
    return min(1.0, (2.0 if alternative == "two-sided" else 1.0) / 2.0 ** n)


def paired_wilcoxon(x, y, settings: WilcoxonSettings = WilcoxonSettings()) -> PairedResult:
    """Wilcoxon signed-rank test of x − y (x = candidate, y = reference), paired by position."""
    from scipy.stats import wilcoxon

    d = differences(x, y, settings.decimals)
    if np.isnan(d).any():
        raise ValueError("paired_wilcoxon got NaN scores; drop them before testing")
    n, n_nonzero = int(d.size), int(np.count_nonzero(d))
    notes = []
    r_plus, r_minus = signed_rank_sums(d, settings.zero_method)
    n_eff = n if settings.zero_method == "zsplit" else n_nonzero
    min_p = min_p_value(n_eff, settings.alternative)
    W = p = math.nan
    if n == 0:
        notes.append("no paired datasets")
    elif n_nonzero == 0:
        # scipy returns p = 1 for several all-zero differences but raises for a single one: say p = 1 always.
        W, p = min(r_plus, r_minus) if settings.alternative == "two-sided" else r_plus, 1.0
        notes.append("all differences are zero")
    else:
        if n_nonzero < n:
            notes.append(f"{n - n_nonzero} zero difference(s), zero_method={settings.zero_method}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # scipy warns on tiny n, reported through min_p below
                result = wilcoxon(d, zero_method=settings.zero_method, correction=settings.correction,
                                  alternative=settings.alternative, method=settings.method)
            W, p = float(result.statistic), float(result.pvalue)
        except ValueError as error:  # e.g. the permutation branch with a single non-zero difference
            notes.append(f"scipy.stats.wilcoxon: {error}")
    if min_p >= settings.alpha:
        notes.append(f"p < {settings.alpha:g} unreachable with {n_eff} pair(s) in the test (min p = {min_p:.4g})")
    ci_low, ci_high = median_ci(d)
    return PairedResult(
        n=n, n_nonzero=n_nonzero, W=W, p=p, r_plus=r_plus, r_minus=r_minus,
        rank_biserial=(r_plus - r_minus) / (r_plus + r_minus) if r_plus + r_minus > 0 else (0.0 if n else math.nan),
        median_diff=float(np.median(d)) if n else math.nan, median_ci_low=ci_low, median_ci_high=ci_high,
        mean_diff=float(np.mean(d)) if n else math.nan,
        hodges_lehmann=hodges_lehmann(d), min_p=min_p, p_unreachable=min_p >= settings.alpha, notes=notes)


def holm(pvalues, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Holm step-down adjusted p-values and rejections; NaN p-values stay NaN and are not in the family."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    adjusted, reject = np.full(p.shape, np.nan), np.zeros(p.shape, dtype=bool)
    finite = np.isfinite(p)
    if finite.any():
        # method="holm" explicitly: statsmodels' default is "hs" (Holm–Šidák).
        reject[finite], adjusted[finite], _, _ = multipletests(p[finite], alpha=alpha, method="holm")
    return reject, adjusted


def holm_bounds(pvalues) -> np.ndarray:
    """Holm-adjusted p-values in plain numpy (no NaN allowed): max over j <= i of (m − j + 1) p_(j), capped at 1.

    The same numbers as ``holm``; used where many small families are adjusted (the power screen), because
    statsmodels' multipletests runs a full garbage collection on every call (~0.1 s)."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p, kind="stable")
    m = p.size
    adjusted_sorted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return adjusted


def friedman(score_matrix) -> tuple[float, float] | None:
    """Friedman χ² over a (datasets × designs) matrix without NaN; None if fewer than 3 designs or 2 datasets."""
    from scipy.stats import friedmanchisquare

    matrix = np.asarray(score_matrix, dtype=float)
    if matrix.ndim != 2 or matrix.shape[1] < 3 or matrix.shape[0] < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = friedmanchisquare(*matrix.T)
    return float(result.statistic), float(result.pvalue)
