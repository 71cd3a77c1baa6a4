"""Run the named comparisons: one paired Wilcoxon test per (pair of designs, category), Holm per family."""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.collect import Problem
from analysis.designs import PRESETS, Design
from analysis.errors import OptionError
from analysis.stats import WilcoxonSettings, holm, paired_wilcoxon
from analysis.tables import ordered_categories

ALL_TASKS = "All tasks"
FAMILIES = ("comparison", "category", "all")
STATS_COLUMNS = ["comparison", "family", "family_size", "category", "reference", "candidate", "n", "n_nonzero", "W",
                 "p", "p_holm", "reject_holm", "significant_raw", "rank_biserial", "median_diff", "median_ci_low",
                 "median_ci_high", "mean_diff",
                 "hodges_lehmann", "r_plus", "r_minus", "min_p", "p_unreachable", "alternative", "zero_method",
                 "method", "alpha", "excluded_tasks", "notes"]


def paired_scores(means, reference: Design, candidate: Design, category: str | None):
    """(tasks, reference scores, candidate scores, excluded) over tasks with a finite seed mean in both designs.

    ``means``: task_means() output, or a {design: its rows} dict of it (faster for many pairs)."""
    by_design = means if isinstance(means, dict) else dict(tuple(means.groupby("design", sort=False)))

    def scores(design):
        rows = by_design.get(design, pd.DataFrame(columns=["category", "task", "mean"]))
        if category is not None:
            rows = rows[rows["category"] == category]
        return rows.set_index("task")["mean"]

    ref, cand = scores(reference), scores(candidate)
    tasks = sorted(set(ref.index) | set(cand.index))
    excluded, kept = [], []
    for task in tasks:
        missing = [d.label() for d, s in ((reference, ref), (candidate, cand))
                   if not np.isfinite(s.get(task, np.nan))]
        if missing:
            excluded.append(f"{task} (no score: {', '.join(missing)})")
        else:
            kept.append(task)
    return kept, ref.reindex(kept).to_numpy(float), cand.reindex(kept).to_numpy(float), excluded


def run_comparisons(means: pd.DataFrame, presets: list[str], baseline: tuple[str, str],
                    settings: WilcoxonSettings = WilcoxonSettings(), family: str = "comparison",
                    pooled: bool = True, labels: dict[Design, str] | None = None
                    ) -> tuple[pd.DataFrame, list[Problem]]:
    """One row per (preset, pair, category [+ all tasks pooled]); Holm-adjusted within each family."""
    def label(design: Design) -> str:
        return (labels or {}).get(design) or design.label()

    if family not in FAMILIES:
        raise OptionError(f"unknown family '{family}'; valid: {', '.join(FAMILIES)}")
    designs = sorted(set(means["design"])) if len(means) else []
    categories = ordered_categories(set(means["category"])) if len(means) else []
    rows, problems = [], []
    by_design = dict(tuple(means.groupby("design", sort=False))) if len(means) else {}
    for preset in presets:
        pairs = PRESETS[preset][1](designs, baseline)
        skipped = [(a, b) for a, b in pairs if a not in designs or b not in designs]
        if skipped:
            absent = sorted({label(d) for pair in skipped for d in pair if d not in designs})
            problems.append(Problem("comparison skipped", preset,
                                    f"{len(skipped)} of {len(pairs)} pair(s) skipped; no scores for: "
                                    f"{', '.join(absent)}"))
        for reference, candidate in pairs:
            if (reference, candidate) in skipped:
                continue
            pair_categories = set(by_design[reference]["category"]) | set(by_design[candidate]["category"])
            # The pooled test is identical to the category's when there is only one category: not repeated.
            pooled_row = [ALL_TASKS] if pooled and len(pair_categories) > 1 else []
            for category in [c for c in categories if c in pair_categories] + pooled_row:
                tasks, x_ref, x_cand, excluded = paired_scores(
                    by_design, reference, candidate, None if category == ALL_TASKS else category)
                result = paired_wilcoxon(x_cand, x_ref, settings)
                rows.append({"comparison": preset, "category": category, "reference": label(reference),
                             "candidate": label(candidate), "reference_design": reference,
                             "candidate_design": candidate, **result.as_dict(),
                             "significant_raw": bool(result.p < settings.alpha),
                             "alternative": settings.alternative, "zero_method": settings.zero_method,
                             "method": settings.method, "alpha": settings.alpha,
                             "excluded_tasks": "; ".join(excluded)})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=STATS_COLUMNS + ["reference_design", "candidate_design"]), problems
    frame["family"] = {"comparison": frame["comparison"],
                       "category": frame["comparison"] + ":" + frame["category"],
                       "all": pd.Series("all", index=frame.index)}[family]
    frame["p_holm"], frame["reject_holm"], frame["family_size"] = np.nan, False, 0
    for _, index in frame.groupby("family").groups.items():
        reject, adjusted = holm(frame.loc[index, "p"].to_numpy(float), settings.alpha)
        frame.loc[index, "p_holm"], frame.loc[index, "reject_holm"] = adjusted, reject
        frame.loc[index, "family_size"] = int(np.isfinite(frame.loc[index, "p"].to_numpy(float)).sum())
    frame["reject_holm"] = frame["reject_holm"].astype(bool)
    return frame[STATS_COLUMNS + ["reference_design", "candidate_design"]], problems
