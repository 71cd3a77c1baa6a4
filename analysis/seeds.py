"""Seed-aware test: a crossed bootstrap over tasks × seeds of the mean paired difference.

A seed is one training run, and a lucky run lifts every task at once; a test over seed-averaged task scores treats
the tasks as independent and never sees that. Here tasks and each design's seeds are resampled independently
(Owen's pigeonhole bootstrap for crossed factors): one draw picks T tasks and S seeds per design, each with
replacement, and the same seeds apply to every task, so run-level noise enters the spread. Seeds are not paired
across designs (seed s of two designs shares the data order but not the heads), which is the conservative choice.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RESAMPLES = 10000
# Below this many tasks a task bootstrap has too few distinct resamples (C(2n-1, n): 126 at n = 5) and is liberal;
# the test is then not run. Six is also where an exact signed-rank test can first reach p < 0.05.
MIN_TASKS = 6


@dataclass
class SeedBootstrap:
    mean_diff: float     # mean over tasks of (candidate seed mean − reference seed mean)
    ci_low: float        # 95% percentile interval of the bootstrap distribution
    ci_high: float
    p: float             # null-centred bootstrap p: share of |b − mean| >= |mean| (two-sided), (1 + k) / (B + 1)
    seeds: tuple[int, int]   # (reference, candidate) seeds used


def resample_means(reference: np.ndarray, candidate: np.ndarray, resamples: int = RESAMPLES,
                   seed: int = 0) -> np.ndarray:
    """Bootstrap distribution of the mean difference; ``reference``/``candidate``: tasks × seeds, rows paired."""
    rng = np.random.default_rng(seed)
    tasks = reference.shape[0]
    t = rng.integers(0, tasks, size=(resamples, tasks))
    s_ref = rng.integers(0, reference.shape[1], size=(resamples, reference.shape[1]))
    s_cand = rng.integers(0, candidate.shape[1], size=(resamples, candidate.shape[1]))
    # mean over the drawn seeds of each task's score, then the mean over drawn tasks
    ref = reference[t[:, :, None], s_ref[:, None, :]].mean(axis=2)
    cand = candidate[t[:, :, None], s_cand[:, None, :]].mean(axis=2)
    return (cand - ref).mean(axis=1)


def seed_bootstrap(reference: np.ndarray, candidate: np.ndarray, alternative: str = "two-sided",
                   resamples: int = RESAMPLES, seed: int = 0) -> SeedBootstrap:
    reference, candidate = np.asarray(reference, dtype=float), np.asarray(candidate, dtype=float)
    if reference.ndim != 2 or candidate.ndim != 2 or reference.shape[0] != candidate.shape[0]:
        raise ValueError(f"need tasks × seeds matrices with the same tasks, got {reference.shape} and "
                         f"{candidate.shape}")
    if np.isnan(reference).any() or np.isnan(candidate).any():
        raise ValueError("seed_bootstrap got NaN scores; impute or drop them first")
    seeds = (reference.shape[1], candidate.shape[1])
    if reference.shape[0] == 0:
        return SeedBootstrap(math.nan, math.nan, math.nan, math.nan, seeds)
    observed = float((candidate.mean(axis=1) - reference.mean(axis=1)).mean())
    boot = resample_means(reference, candidate, resamples, seed)
    centred = boot - observed          # the bootstrap distribution moved to the null (mean difference 0)
    if alternative == "two-sided":
        extreme = np.abs(centred) >= abs(observed) - 1e-12
    elif alternative == "greater":
        extreme = centred >= observed - 1e-12
    else:
        extreme = centred <= observed + 1e-12
    p = (1.0 + float(extreme.sum())) / (resamples + 1.0)
    low, high = np.percentile(boot, [2.5, 97.5])
    return SeedBootstrap(observed, float(low), float(high), min(1.0, p), seeds)
