"""Run the named comparisons: every distinct (pair of designs, category) is tested once, whichever presets name it.

Each test gets the paper's paired Wilcoxon over seed-averaged task scores, a seed-aware crossed bootstrap where
both designs have several seeds, and the minimum detectable effect at its number of tasks; Holm is applied once,
within the pre-registered family (analysis/family.py).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis import factors, reach
from analysis import family as families
from analysis.collect import Problem
from analysis.designs import PRESETS, Design, PairContext
from analysis.power import minimum_detectable_effect
from analysis.seeds import MIN_TASKS, seed_bootstrap
from analysis.stats import WilcoxonSettings, differences, paired_wilcoxon
from analysis.tables import is_in_domain, ordered_categories

ALL_TASKS = "All out-of-domain tasks"
STATS_COLUMNS = ["comparisons", "family", "family_note", "family_size", "category", "in_domain", "reference",
                 "candidate", "factor", "effect", "n", "n_nonzero", "W", "p", "p_holm", "reject_holm",
                 "significant_raw", "rank_biserial", "median_diff", "median_ci_low", "median_ci_high", "mean_diff",
                 "hodges_lehmann", "r_plus", "r_minus", "min_p", "min_p_holm", "p_unreachable", "sd_diff",
                 "mde_alpha", "mde_dz", "mde", "seeds_reference", "seeds_candidate", "p_seed", "p_seed_holm",
                 "reject_seed_holm", "seed_ci_low", "seed_ci_high", "reachable", "tasks_needed", "seeds_needed",
                 "alternative", "zero_method", "method", "alpha", "excluded_tasks", "notes"]


def paired_scores(means, reference: Design, candidate: Design, category: str | None):
    """(tasks, reference scores, candidate scores, excluded) over tasks with a finite seed mean in both designs.

    ``means``: task_means() output, or a {design: its rows} dict of it (faster for many pairs);
    ``category=None``: every out-of-domain task."""
    by_design = means if isinstance(means, dict) else dict(tuple(means.groupby("design", sort=False)))

    def scores(design):
        rows = by_design.get(design, pd.DataFrame(columns=["category", "in_domain", "task", "mean"]))
        rows = rows[~rows["in_domain"].astype(bool)] if category is None else rows[rows["category"] == category]
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


def seed_tables(per_seed: pd.DataFrame | None) -> dict[Design, pd.DataFrame]:
    """{design: tasks × seeds} of imputed per-seed scores (tables.imputed_seed_scores), built once per design."""
    if per_seed is None or per_seed.empty:
        return {}
    return {design: rows.pivot_table(index="task", columns="seed", values="score", aggfunc="mean")
            for design, rows in per_seed.groupby("design", sort=False)}


def seed_matrix(tables: dict, design: Design, tasks: list[str]) -> np.ndarray:
    """tasks × seeds of one design; a task a seed lacks gets the task's mean over the design's other seeds."""
    table = tables.get(design)
    if table is None or not tasks:
        return np.zeros((len(tasks), 0))
    matrix = table.reindex(tasks).to_numpy(float)
    missing = np.isnan(matrix)
    if missing.any():
        with np.errstate(invalid="ignore"):
            row_means = np.nanmean(np.where(missing.all(axis=1, keepdims=True), 0.0, matrix), axis=1)
        matrix = np.where(missing, row_means[:, None], matrix)
    return matrix


def distinct_tests(presets: list[str], designs: list[Design], context: PairContext, label, available=None
                   ) -> tuple[dict, list[Problem]]:
    """{frozenset(pair): [reference, candidate, [presets]]}: the first preset to name a pair sets its direction
    (vs_baseline first, so differences there are always design − baseline). ``available``: designs with scores
    (default ``designs``; the derived factors add their marginal designs)."""
    tests, problems = {}, []
    available = set(designs if available is None else available)
    for preset in sorted(presets, key=lambda p: p != "vs_baseline"):
        pairs = PRESETS[preset][1](designs, context)
        skipped = [(a, b) for a, b in pairs if a not in available or b not in available]
        if skipped:
            absent = sorted({label(d) for pair in skipped for d in pair if d not in available})
            problems.append(Problem("comparison skipped", preset,
                                    f"{len(skipped)} of {len(pairs)} pair(s) skipped; no scores for: "
                                    f"{', '.join(absent)}"))
        for reference, candidate in pairs:
            if (reference, candidate) in skipped:
                continue
            entry = tests.setdefault(frozenset((reference, candidate)), [reference, candidate, []])
            entry[2].append(preset)
    for entry in tests.values():
        entry[2] = [p for p in presets if p in entry[2]]
    return tests, problems


def run_comparisons(means: pd.DataFrame, presets: list[str], baseline: tuple[str, str],
                    settings: WilcoxonSettings = WilcoxonSettings(), family_presets: tuple[str, ...] = (),
                    pooled: bool = True, labels: dict[Design, str] | None = None,
                    per_seed: pd.DataFrame | None = None, power: float = 0.8, screen: bool = True,
                    twin: tuple[str, str] | None = None) -> tuple[pd.DataFrame, list[Problem], families.Family]:
    """One row per distinct (pair, category [+ all out-of-domain tasks pooled]); Holm once, over the family.

    ``per_seed``: imputed per-seed scores (tables.imputed_seed_scores) for the seed-aware test."""
    def label(design: Design) -> str:
        return (labels or {}).get(design) or design.label()

    context = PairContext(tuple(baseline), twin)
    designs = sorted(set(means["design"])) if len(means) else []
    factor_names = [f.name for f in factors.factors(designs, context)]
    marginal = factors.marginals(designs, context) if "factors" in presets else {}
    means, per_seed = factors.add_marginals(means, per_seed, marginal)
    if marginal:
        with_model = not labels or any(text.startswith(d.model + "/") for d, text in labels.items())
        labels = {**(labels or {}), **{m: m.label(with_model=with_model) for m in marginal}}
    categories = ordered_categories(set(means["category"])) if len(means) else []
    by_design = dict(tuple(means.groupby("design", sort=False))) if len(means) else {}
    seeds = seed_tables(per_seed)
    tests, problems = distinct_tests(presets, designs, context, label, available=designs + list(marginal))
    rows = []
    for reference, candidate, names in tests.values():
        pair_categories = set(by_design[reference]["category"]) | set(by_design[candidate]["category"])
        primary = [c for c in categories if c in pair_categories and not is_in_domain(c)]
        # The pooled test is identical to the category's when there is only one category: not repeated.
        pooled_row = [ALL_TASKS] if pooled and len(primary) > 1 else []
        for category in [c for c in categories if c in pair_categories] + pooled_row:
            tasks, x_ref, x_cand, excluded = paired_scores(
                by_design, reference, candidate, None if category == ALL_TASKS else category)
            result = paired_wilcoxon(x_cand, x_ref, settings)
            d = differences(x_cand, x_ref, settings.decimals)
            row = {"comparisons": ", ".join(names), "category": category,
                   "in_domain": category != ALL_TASKS and is_in_domain(category),
                   "reference": label(reference), "candidate": label(candidate),
                   **dict(zip(("factor", "effect"), factors.describe(reference, candidate, factor_names))),
                   "reference_design": reference,
                   "candidate_design": candidate, **result.as_dict(),
                   "significant_raw": bool(result.p < settings.alpha),
                   "sd_diff": float(np.std(d, ddof=1)) if d.size > 1 else math.nan,
                   "alternative": settings.alternative, "zero_method": settings.zero_method,
                   "method": settings.method, "alpha": settings.alpha, "excluded_tasks": "; ".join(excluded)}
            row.update(_seed_test(seeds, reference, candidate, tasks, settings, row))
            rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return (pd.DataFrame(columns=STATS_COLUMNS + ["reference_design", "candidate_design"]), problems,
                families.Family(tuple(family_presets), screen))
    own_floor_unreachable = frame["p_unreachable"].astype(bool)
    family = families.assign(frame, tuple(family_presets), settings.alpha, settings.alternative, ALL_TASKS, screen)
    frame["p_unreachable"] = frame["p_unreachable"] | own_floor_unreachable   # zeros dropped: fewer pairs left
    frame["p_seed_holm"], frame["reject_seed_holm"] = families.adjust_within(frame, "p_seed", settings.alpha)
    _detectable_effects(frame, family, settings, power)
    reach.needs(frame, family, settings)
    return frame[STATS_COLUMNS + ["reference_design", "candidate_design"]], problems, family


def _seed_test(seeds: dict, reference: Design, candidate: Design, tasks: list[str], settings, row) -> dict:
    ref, cand = seed_matrix(seeds, reference, tasks), seed_matrix(seeds, candidate, tasks)
    out = {"seeds_reference": ref.shape[1], "seeds_candidate": cand.shape[1], "p_seed": math.nan,
           "seed_ci_low": math.nan, "seed_ci_high": math.nan}
    if min(ref.shape[1], cand.shape[1]) < 2 or not tasks:
        return out
    if len(tasks) < MIN_TASKS:
        note = f"seed-aware test not run: {len(tasks)} task(s) < {MIN_TASKS}"
        return {**out, "notes": "; ".join(x for x in (row["notes"], note) if x)}
    boot = seed_bootstrap(ref, cand, settings.alternative)
    return {**out, "p_seed": boot.p, "seed_ci_low": boot.ci_low, "seed_ci_high": boot.ci_high}


def _detectable_effects(frame: pd.DataFrame, family: families.Family, settings: WilcoxonSettings,
                        power: float) -> None:
    """MDE at power ``power``: family members at Holm's strictest step alpha/m, all other tests at alpha."""
    alphas = np.where(frame["family"] == families.PRIMARY, settings.alpha / max(family.size, 1), settings.alpha)
    frame["mde_alpha"] = alphas
    frame["mde_dz"] = [minimum_detectable_effect(int(n), float(a), power, settings.alternative)
                       for n, a in zip(frame["n"], alphas)]
    frame["mde"] = frame["mde_dz"] * frame["sd_diff"]
