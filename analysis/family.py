"""The one pre-registered Holm family of an analysis, fixed by the design of the sweep before any score is read.

Members: the per-category tests of the family's comparison presets on out-of-domain categories. Not members
(reported with their raw p only): the all-tasks pooled tests, in-domain categories, pairs outside those presets,
and, unless ``screen=False``, tests that could not reach a Holm-adjusted p < alpha whatever the scores. That last
rule uses only the number of paired tasks: the smallest p an exact signed-rank test can give is 2/2^n, Holm's
adjusted p-values never decrease when a p-value grows, so Holm applied to those floors is the best each test could
ever get. The family kept is the largest set, taken in order of more tasks first (a tie kept or dropped whole), in
which every member can still reach alpha.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.stats import holm, holm_bounds, min_p_value

PRIMARY, SCREENED, EXPLORATORY = "primary", "screened out", "exploratory"


@dataclass
class Family:
    presets: tuple[str, ...]
    screen: bool
    size: int = 0                                          # m: tests in the family
    registered: int = 0                                    # candidates before the power screen
    categories: list[str] = field(default_factory=list)    # categories with at least one member
    screened: list[tuple[str, int, float]] = field(default_factory=list)   # (category, n, best Holm p) dropped
    basis: str = ""                                        # why these presets, where the family was "auto"


def _floors(n: pd.Series, alternative: str) -> np.ndarray:
    return np.array([min_p_value(int(k), alternative) for k in n], dtype=float)


def _holm_floor(floors: np.ndarray, alpha: float) -> np.ndarray:
    return holm_bounds(floors) if floors.size else floors


def assign(frame: pd.DataFrame, presets: tuple[str, ...], alpha: float, alternative: str, pooled_label: str,
           screen: bool = True) -> Family:
    """Fill family, family_note, family_size, min_p_holm, p_unreachable, p_holm, reject_holm in ``frame``."""
    family = Family(tuple(presets), screen)
    in_presets = frame["comparisons"].map(lambda c: bool(set(c.split(", ")) & set(presets)))
    pooled, in_domain = frame["category"] == pooled_label, frame["in_domain"].astype(bool)
    candidate = in_presets & ~pooled & ~in_domain
    frame["family"], frame["family_note"] = EXPLORATORY, ""
    frame.loc[pooled, "family_note"] = "pooled over all out-of-domain tasks (overlaps the per-category tests)"
    frame.loc[in_domain, "family_note"] = "in-domain category (its text is in the training data)"
    frame.loc[~in_presets & ~pooled & ~in_domain, "family_note"] = (
        f"pair not in the pre-registered comparisons ({', '.join(presets)})")
    floors = _floors(frame["n"], alternative)
    frame["min_p_holm"] = floors                       # exploratory tests: uncorrected
    frame["p_unreachable"] = floors >= alpha

    index = frame.index[candidate]
    family.registered = len(index)
    order = sorted(index, key=lambda i: (floors[frame.index.get_loc(i)], i))
    groups: list[list] = []
    for i in order:
        floor = floors[frame.index.get_loc(i)]
        if groups and floors[frame.index.get_loc(groups[-1][0])] == floor:
            groups[-1].append(i)
        else:
            groups.append([i])
    kept = len(groups)
    if screen:
        while kept and _holm_floor(_group_floors(groups[:kept], frame, floors), alpha).max() >= alpha:
            kept -= 1
    members = [i for g in groups[:kept] for i in g]
    for g in range(kept, len(groups)):                 # why each dropped test was dropped
        best = _holm_floor(_group_floors(groups[:g + 1], frame, floors), alpha)[-len(groups[g]):]
        for i, q in zip(groups[g], best):
            frame.loc[i, ["family", "min_p_holm", "p_unreachable"]] = [SCREENED, q, True]
            frame.loc[i, "family_note"] = (f"cannot reach Holm p < {alpha:g}: with n = {frame.loc[i, 'n']} tasks "
                                           f"the best adjusted p is {q:.3g}; reported uncorrected")
            family.screened.append((frame.loc[i, "category"], int(frame.loc[i, "n"]), float(q)))
    family.size = len(members)
    frame["family_size"] = 0
    frame["p_holm"], frame["reject_holm"] = np.nan, False
    if members:
        floor_holm = _holm_floor(np.array([floors[frame.index.get_loc(i)] for i in members]), alpha)
        reject, adjusted = holm(frame.loc[members, "p"].to_numpy(float), alpha)
        frame.loc[members, "family"], frame.loc[members, "family_size"] = PRIMARY, len(members)
        frame.loc[members, "min_p_holm"], frame.loc[members, "p_unreachable"] = floor_holm, floor_holm >= alpha
        frame.loc[members, "p_holm"], frame.loc[members, "reject_holm"] = adjusted, reject
        family.categories = list(dict.fromkeys(frame.loc[members, "category"]))
    frame["reject_holm"] = frame["reject_holm"].astype(bool)
    frame["p_unreachable"] = frame["p_unreachable"].astype(bool)
    return family


def _group_floors(groups, frame: pd.DataFrame, floors: np.ndarray) -> np.ndarray:
    return np.array([floors[frame.index.get_loc(i)] for g in groups for i in g], dtype=float)


def adjust_within(frame: pd.DataFrame, column: str, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Holm over the family's members for another p-value column (e.g. the seed-aware test); NaN elsewhere."""
    adjusted, reject = np.full(len(frame), np.nan), np.zeros(len(frame), dtype=bool)
    members = (frame["family"] == PRIMARY).to_numpy()
    if members.any():
        r, a = holm(frame.loc[members, column].to_numpy(float), alpha)
        adjusted[members], reject[members] = a, r
    return adjusted, reject
