"""The grid's factors, derived from the designs found, and the comparisons that fit them.

A factor is a design dimension (model, pooling, attention, or a ``--by`` key) with at least two levels among the
designs. Its **simple effects** are the pairs of designs that differ in that factor only (the pooling effect
within each attention, the attention effect within each pooling). Where the designs form a full factorial (every
combination of levels present), its **main effects** compare the factor's levels averaged over the other factors:
each side is a *marginal design* (the other factors shown as ``*``) whose task score is the mean of its member
designs' seed-averaged task scores, and whose seed ``s`` is the mean of the members' seed ``s``.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations, product

import numpy as np
import pandas as pd

from analysis.designs import ALL, PAPER_DESIGNS, Design, PairContext

BASE_DIMENSIONS = ("model", "pooling", "attention")


@dataclass(frozen=True)
class Factor:
    name: str                  # model | pooling | attention | a --by key
    levels: tuple[str, ...]    # reference level first (the baseline's where it has one)


def value(design: Design, name: str) -> str:
    return getattr(design, name) if name in BASE_DIMENSIONS else dict(design.extra).get(name, "")


def dimensions(designs) -> list[str]:
    extra = list(dict.fromkeys(key for d in designs for key, _ in d.extra))
    return list(BASE_DIMENSIONS) + extra


def _level_order(name: str, level: str, context: PairContext) -> tuple:
    """The baseline's level first, then the paper's design order, then by name."""
    baseline = dict(zip(("pooling", "attention"), context.baseline))
    index = {"pooling": 0, "attention": 1}.get(name)
    paper = min((n for key, n in PAPER_DESIGNS.items() if index is not None and key[index] == level), default=99)
    return (level != baseline.get(name), paper, level)


def factors(designs, context: PairContext = PairContext()) -> list[Factor]:
    designs = [d for d in designs if not is_marginal(d)]
    out = []
    for name in dimensions(designs):
        levels = {value(d, name) for d in designs}
        if len(levels) > 1:
            out.append(Factor(name, tuple(sorted(levels, key=lambda v: _level_order(name, v, context)))))
    return out


def is_marginal(design: Design) -> bool:
    return ALL in (design.model, design.pooling, design.attention) or any(v == ALL for _, v in design.extra)


def full_factorial(designs, found: list[Factor]) -> list[tuple[str, ...]]:
    """Level combinations of ``found`` that no design has (empty: a full factorial)."""
    have = {tuple(value(d, f.name) for f in found) for d in designs if not is_marginal(d)}
    return [combo for combo in product(*(f.levels for f in found)) if combo not in have]


def with_values(design: Design, values: dict[str, str]) -> Design:
    base = {k: values.get(k, getattr(design, k)) for k in BASE_DIMENSIONS}
    extra = tuple((k, values.get(k, v)) for k, v in design.extra)
    return Design(base["model"], base["pooling"], base["attention"], extra)


def simple_effects(designs, context: PairContext) -> list[tuple[Design, Design]]:
    found = factors(designs, context)
    designs = sorted(d for d in designs if not is_marginal(d))
    out = []
    for factor in found:
        rank = {level: i for i, level in enumerate(factor.levels)}
        for a, b in combinations(designs, 2):
            if differing(a, b) == [factor.name]:
                out.append((a, b) if rank[value(a, factor.name)] < rank[value(b, factor.name)] else (b, a))
    return out


def marginals(designs, context: PairContext) -> dict[Design, list[Design]]:
    """{marginal design: its member designs} for every factor's levels, where the designs are a full factorial
    of at least two factors (with one factor the simple effects are the main effects); and, with several models,
    every design that each model has, pooled over the models (the paper's pooled table), factorial or not."""
    designs = [d for d in designs if not is_marginal(d)]
    found = factors(designs, context)
    out: dict[Design, list[Design]] = {}
    if len(found) >= 2 and not full_factorial(designs, found):
        for factor in found:
            others = {f.name: ALL for f in found if f.name != factor.name}
            for design in designs:
                out.setdefault(with_values(design, others), []).append(design)
    return {**out, **over_models(designs, context)}


def over_models(designs, context: PairContext) -> dict[Design, list[Design]]:
    """{design pooled over the models: its member designs}, for designs that every model of the grid has."""
    models = {d.model for d in designs}
    if len(models) < 2:
        return {}
    groups: dict[Design, list[Design]] = {}
    for design in designs:
        groups.setdefault(with_values(design, {"model": ALL}), []).append(design)
    return {pooled: members for pooled, members in groups.items() if {d.model for d in members} == models}


def pooled_over_models(designs, context: PairContext) -> list[tuple[Design, Design]]:
    """Each design pooled over the models against the baseline pooled likewise (Design − baseline, pooled)."""
    pooled = over_models([d for d in designs if not is_marginal(d)], context)
    baseline = next((d for d in pooled if (d.pooling, d.attention) == tuple(context.baseline)), None)
    if baseline is None:
        return []
    return [(baseline, d) for d in sorted(pooled) if d != baseline]


def main_effects(designs, context: PairContext) -> list[tuple[Design, Design]]:
    found = factors(designs, context)
    designs = [d for d in designs if not is_marginal(d)]
    if len(found) < 2 or full_factorial(designs, found):
        return []
    groups = marginals(designs, context)
    out = []
    for factor in found:
        by_level = {value(m, factor.name): m for m in groups if value(m, factor.name) != ALL
                    and all(value(m, f.name) == ALL for f in found if f.name != factor.name)}
        out += [(by_level[a], by_level[b]) for a, b in combinations(factor.levels, 2)]
    return out


def factor_pairs(designs, context: PairContext) -> list[tuple[Design, Design]]:
    main = main_effects(designs, context)
    return simple_effects(designs, context) + main + [p for p in pooled_over_models(designs, context)
                                                       if p not in main]


def differing(a: Design, b: Design) -> list[str]:
    return [name for name in dimensions([a, b]) if value(a, name) != value(b, name)]


def describe(reference: Design, candidate: Design, factor_names=()) -> tuple[str, str]:
    """(factor, effect) of a pair: which dimension(s) differ, and whether it is a simple effect (within the
    other factors' levels) or a main effect (averaged over them); the effect is "" for pairs of other shapes."""
    names = differing(reference, candidate)
    factor = " × ".join(names)
    if is_marginal(reference) and is_marginal(candidate):
        over = [n for n in dimensions([reference]) if value(reference, n) == ALL]
        return factor, f"main (averaged over {', '.join(over)})"
    if len(names) == 1:
        within = [f"{n}={value(reference, n)}" for n in factor_names if n not in names]
        return factor, "simple" + (f" ({', '.join(within)})" if within else "")
    return factor, ""


def add_marginals(means: pd.DataFrame, per_seed: pd.DataFrame | None, groups: dict[Design, list[Design]]
                  ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Append the marginal designs' rows: a task's score is the mean over the member designs (NaN where any member
    lacks it, so the task drops out of the marginal's tests), per seed label likewise (seeds all members have)."""
    if not groups or means.empty:
        return means, per_seed
    extra_means = []
    for marginal, members in groups.items():
        grouped = means[means["design"].isin(members)].groupby(["category", "in_domain", "task"])["mean"]
        mean = grouped.mean().where(grouped.count() == len(members))   # NaN unless every member has the task
        extra_means.append(mean.reset_index().assign(design=marginal, std=np.nan, n_seeds=0))
    means = pd.concat([means] + extra_means, ignore_index=True)
    if per_seed is not None and len(per_seed):
        per_seed = pd.concat([per_seed, marginal_seed_scores(per_seed, groups)], ignore_index=True)
    return means, per_seed


def marginal_seed_scores(per_seed: pd.DataFrame, groups: dict[Design, list[Design]]) -> pd.DataFrame:
    """The marginal designs' per-seed task scores (columns seed, category, in_domain, task, score, design): the
    mean over the member designs, for seed labels and tasks every member has."""
    parts = []
    for marginal, members in groups.items():
        rows = per_seed[per_seed["design"].isin(members)]
        seeds = set.intersection(*(set(rows.loc[rows["design"] == m, "seed"]) for m in members))
        rows = rows[rows["seed"].isin(seeds)]
        grouped = rows.groupby(["seed", "category", "in_domain", "task"])
        seed_mean = grouped["score"].mean()[grouped["design"].nunique() == len(members)].reset_index()
        parts.append(seed_mean.assign(design=marginal))
    columns = ["seed", "category", "in_domain", "task", "score", "design"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
