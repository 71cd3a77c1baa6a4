"""Which tests cannot reach α at the sweep's numbers of tasks and seeds, and what would make them reachable.

The paired Wilcoxon over n tasks cannot give p below 2/2^n (two-sided; 1/2^n one-sided), and in a Holm family of
m tests with n tasks each the best adjusted p is m·2/2^n: the tasks a test needs follow from n and m alone. The
seed-aware test runs only where both designs have at least two seeds and the test has at least ``MIN_TASKS``
tasks. Every such test is listed, never silently dropped.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.family import EXPLORATORY, PRIMARY, SCREENED
from analysis.seeds import MIN_TASKS
from analysis.stats import min_p_value

MIN_SEEDS = 2
PAIRS_SHOWN = 6   # pairs named per row of the listing (all of them are in stats.csv)


def tasks_needed(m: int, alpha: float, alternative: str) -> int:
    """Smallest n whose best Holm-adjusted p in a family of m tests with n tasks each is below alpha."""
    n = 1
    while max(m, 1) * min_p_value(n, alternative) >= alpha:
        n += 1
    return n


def needs(frame: pd.DataFrame, family, settings) -> None:
    """Fill ``reachable``, ``tasks_needed`` (tasks per test for the paired test to reach α, family members and
    screened-out tests at the registered family's size) and ``seeds_needed`` (per design, for the seed-aware
    test; 0 where it already has enough)."""
    in_family = frame["family"].isin([PRIMARY, SCREENED])
    m = np.where(in_family, max(family.registered, 1), 1)
    frame["reachable"] = ~frame["p_unreachable"].astype(bool)
    frame["tasks_needed"] = [max(tasks_needed(int(k), settings.alpha, settings.alternative), MIN_TASKS)
                             if not ok or n < MIN_TASKS else 0
                             for k, ok, n in zip(m, frame["reachable"], frame["n"])]
    seeds = np.minimum(frame["seeds_reference"].to_numpy(int), frame["seeds_candidate"].to_numpy(int))
    frame["seeds_needed"] = np.where(seeds < MIN_SEEDS, MIN_SEEDS, 0)


def _why(row, alpha: float, alternative: str, m: int) -> str:
    parts = []
    if not row["reachable"]:
        n, nonzero = int(row["n"]), int(row["n_nonzero"])
        if row["family"] in (PRIMARY, SCREENED) and m > 1 and row["min_p_holm"] >= alpha:
            parts.append(f"paired test: the smallest p with n = {n} tasks is {min_p_value(n, alternative):.3g}; "
                         f"in a family of {m} tests Holm's best is {min(1.0, row['min_p_holm']):.3g} ≥ {alpha:g}")
        elif min_p_value(n, alternative) >= alpha:
            parts.append(f"paired test: the smallest p with n = {n} tasks is {min_p_value(n, alternative):.3g} "
                         f"≥ {alpha:g}")
        else:
            parts.append(f"paired test: {nonzero} of {n} differences are non-zero; the smallest p is "
                         f"{min_p_value(nonzero, alternative):.3g} ≥ {alpha:g}")
    seeds = min(int(row["seeds_reference"]), int(row["seeds_candidate"]))
    if seeds < MIN_SEEDS:
        parts.append(f"seed-aware test: {seeds} seed(s) per design (needs {MIN_SEEDS})")
    elif row["n"] < MIN_TASKS:
        parts.append(f"seed-aware test: n = {row['n']} < {MIN_TASKS} tasks")
    return "; ".join(parts)


def _remedy(row) -> str:
    parts = []
    if row["tasks_needed"]:
        parts.append(f"≥ {int(row['tasks_needed'])} tasks in the category")
    if row["seeds_needed"]:
        parts.append(f"≥ {int(row['seeds_needed'])} seeds per design")
    return " and ".join(parts)


def unreachable(stats: pd.DataFrame, family, settings) -> pd.DataFrame:
    """One row per group of tests that cannot reach α (paired test) or get no seed-aware test: family status,
    category, n, the seeds, why, what would make them reachable, and the pairs."""
    columns = ["family", "category", "tests", "n", "why", "reachable with", "pairs"]
    if stats.empty:
        return pd.DataFrame(columns=columns)
    m = max(family.registered, 1)
    rows = stats[~stats["reachable"] | (stats["seeds_needed"] > 0) | (stats["n"] < MIN_TASKS)].copy()
    if rows.empty:
        return pd.DataFrame(columns=columns)
    rows["why"] = [_why(r, settings.alpha, settings.alternative, m) for _, r in rows.iterrows()]
    rows["remedy"] = [_remedy(r) for _, r in rows.iterrows()]
    rows["where"] = rows["family"].map({PRIMARY: "family", SCREENED: "family (screened out)",
                                        EXPLORATORY: "other tests"})
    out = []
    for (where, category, n, why, remedy), group in rows.groupby(["where", "category", "n", "why", "remedy"],
                                                                  sort=False):
        pairs = [f"{r['candidate']} vs {r['reference']}" + (f" ({r['effect']})" if r["effect"] else "")
                 for _, r in group.iterrows()]
        shown = "; ".join(pairs[:PAIRS_SHOWN]) + (f"; … ({len(pairs) - PAIRS_SHOWN} more in stats.csv)"
                                                  if len(pairs) > PAIRS_SHOWN else "")
        out.append([where, category, len(group), int(n), why, remedy or "—", shown])
    order = {"family": 0, "family (screened out)": 1, "other tests": 2}
    out.sort(key=lambda r: (order[r[0]], r[1], r[3]))
    return pd.DataFrame(out, columns=columns)


def summary(table: pd.DataFrame) -> str:
    if table.empty:
        return "every test can reach α"
    return f"{int(table['tests'].sum())} test(s) cannot reach α or get no seed-aware test"
