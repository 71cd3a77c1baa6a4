"""Seed aggregation: per-task means (what the paired tests use) and per-category means ± std across seeds.

Tasks whose text comes from the training source (``in_domain``) form their own columns, "<Category> (in-domain)";
the means over tasks and categories, the primary result, are over out-of-domain tasks only.
"""
from __future__ import annotations

import pandas as pd

from analysis.factors import marginal_seed_scores

# The paper's column order first; other MTEB task types follow alphabetically.
CATEGORY_ORDER = ("STS", "Classification", "Retrieval", "Clustering", "Reranking", "PairClassification",
                  "Summarization")
MEAN_TASK, MEAN_CATEGORY, MEAN_IN_DOMAIN = "Mean (Task)", "Mean (Category)", "Mean (in-domain Task)"
IN_DOMAIN = " (in-domain)"
MEANS = (MEAN_TASK, MEAN_CATEGORY, MEAN_IN_DOMAIN)


def is_in_domain(column: str) -> bool:
    return column.endswith(IN_DOMAIN) or column == MEAN_IN_DOMAIN


def base_category(column: str) -> str:
    return column[:-len(IN_DOMAIN)] if column.endswith(IN_DOMAIN) else column


def ordered_categories(categories) -> list[str]:
    """Out-of-domain categories in the paper's order, then the in-domain ones in the same order."""
    categories = set(categories)

    def paper_order(names):
        names = set(names)
        by_base = {base_category(c): c for c in names}
        known = [by_base[b] for b in CATEGORY_ORDER if b in by_base]
        return known + sorted(names - set(known))

    return (paper_order(c for c in categories if not is_in_domain(c))
            + paper_order(c for c in categories if is_in_domain(c)))


def label_domains(scores: pd.DataFrame) -> pd.DataFrame:
    """The category of an in-domain task becomes "<Category> (in-domain)"; the raw flag stays in ``in_domain``."""
    if "in_domain" not in scores:
        return scores.assign(in_domain=False)
    flag = scores["in_domain"].fillna(False).astype(bool)
    return scores.assign(in_domain=flag, category=scores["category"].where(~flag, scores["category"] + IN_DOMAIN))


def seed_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """One score per (design, seed, task): cells duplicated for one design and seed are averaged (and reported)."""
    scores = scores if "in_domain" in scores else scores.assign(in_domain=False)
    return (scores.groupby(["design", "seed", "category", "in_domain", "task"], sort=False, dropna=False)["score"]
            .mean().reset_index())


def task_means(scores: pd.DataFrame) -> pd.DataFrame:
    """design, category, in_domain, task, mean, std, n_seeds: the seed-averaged score of each design on each task.

    NaN scores are skipped (a task NaN in every seed stays NaN and drops out of the tests).
    """
    per_seed = seed_scores(scores)
    grouped = per_seed.groupby(["design", "category", "in_domain", "task"], sort=False)["score"]
    out = grouped.agg(mean="mean", std="std", n_seeds="count").reset_index()
    return out


def imputed_seed_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Per-seed scores where a NaN is replaced by that task's mean over the design's other seeds (tasks NaN in
    every seed are dropped), so a category's mean over seeds equals the mean of its seed-averaged task scores."""
    per_seed = seed_scores(scores)
    task_mean = per_seed.groupby(["design", "task"])["score"].transform("mean")
    return per_seed.assign(score=per_seed["score"].fillna(task_mean)).dropna(subset=["score"])


def category_table(scores: pd.DataFrame, marginals: dict | None = None) -> pd.DataFrame:
    """Long table: design, column (category | Mean (Task) | Mean (Category) | in-domain categories |
    Mean (in-domain Task)), mean, std over seeds, n_seeds, n_tasks (tasks with a finite score) and total_tasks
    (tasks of that column across all designs). Mean (Task) and Mean (Category) are over out-of-domain tasks.

    A NaN score in one seed is imputed by the task's mean over the other seeds (see imputed_seed_scores).
    ``marginals`` ({design pooled over others: its member designs}, analysis.factors) adds a row per pooled design,
    each task's score the mean over its members (factors.marginal_seed_scores)."""
    per_seed = imputed_seed_scores(scores)
    if marginals and len(per_seed):
        per_seed = pd.concat([per_seed, marginal_seed_scores(per_seed, marginals)], ignore_index=True)
    if per_seed.empty:
        return pd.DataFrame(columns=["design", "column", "mean", "std", "n_seeds", "n_tasks", "total_tasks"])
    by_category = (per_seed.groupby(["design", "seed", "category", "in_domain"])["score"].mean().rename("score")
                   .reset_index().rename(columns={"category": "column"}))
    parts = [by_category]
    for column, in_domain, source in ((MEAN_TASK, False, per_seed), (MEAN_CATEGORY, False, by_category),
                                      (MEAN_IN_DOMAIN, True, per_seed)):
        rows = source[source["in_domain"] == in_domain]
        if len(rows):
            mean = rows.groupby(["design", "seed"])["score"].mean().rename("score").reset_index()
            parts.append(mean.assign(column=column))
    long = pd.concat(parts, ignore_index=True)
    table = long.groupby(["design", "column"])["score"].agg(mean="mean", std="std", n_seeds="count").reset_index()

    tasks = per_seed.drop_duplicates(["design", "category", "task"])
    n_tasks = tasks.groupby(["design", "category"])["task"].nunique().rename("n_tasks").reset_index()
    n_tasks = n_tasks.rename(columns={"category": "column"})
    totals = {c: g["task"].nunique() for c, g in tasks.groupby("category")}
    table = table.merge(n_tasks, on=["design", "column"], how="left")
    for columns, in_domain in (((MEAN_TASK, MEAN_CATEGORY), False), ((MEAN_IN_DOMAIN,), True)):
        domain_tasks = tasks[tasks["in_domain"] == in_domain]
        per_design = domain_tasks.groupby("design")["task"].nunique()
        for column in columns:
            totals[column] = domain_tasks["task"].nunique()
            rows = table["column"] == column
            table.loc[rows, "n_tasks"] = table.loc[rows, "design"].map(per_design)
    table["n_tasks"] = table["n_tasks"].astype(int)
    table["total_tasks"] = table["column"].map(totals).astype(int)
    return table


def wide(table: pd.DataFrame, value: str = "mean") -> pd.DataFrame:
    """Rows = designs, columns = categories in the paper's order, then the two means."""
    if table.empty:
        return pd.DataFrame()
    frame = table.pivot(index="design", columns="column", values=value)
    categories = ordered_categories(c for c in frame.columns if c not in MEANS)
    primary = [c for c in categories if not is_in_domain(c)] + [MEAN_TASK, MEAN_CATEGORY]
    in_domain = [c for c in categories if is_in_domain(c)]
    in_domain += [MEAN_IN_DOMAIN] if in_domain else []
    return frame.reindex(columns=[c for c in primary + in_domain if c in frame.columns])


def score_matrix(means: pd.DataFrame, category: str | None) -> pd.DataFrame:
    """tasks × designs of seed-averaged scores, restricted to tasks every design has a finite score on.

    ``category=None``: all out-of-domain tasks."""
    rows = means[~means["in_domain"].astype(bool)] if category is None else means[means["category"] == category]
    return rows.pivot(index="task", columns="design", values="mean").dropna(axis=0, how="any")
