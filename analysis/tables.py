"""Seed aggregation: per-task means (what the paired tests use) and per-category means ± std across seeds."""
from __future__ import annotations

import pandas as pd

# The paper's column order first; other MTEB task types follow alphabetically.
CATEGORY_ORDER = ("STS", "Classification", "Retrieval", "Clustering", "Reranking", "PairClassification",
                  "Summarization")
MEAN_TASK, MEAN_CATEGORY = "Mean (Task)", "Mean (Category)"


def ordered_categories(categories) -> list[str]:
    categories = set(categories)
    return [c for c in CATEGORY_ORDER if c in categories] + sorted(categories - set(CATEGORY_ORDER))


def seed_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """One score per (design, seed, task): cells duplicated for one design and seed are averaged (and reported)."""
    return (scores.groupby(["design", "seed", "category", "task"], sort=False, dropna=False)["score"]
            .mean().reset_index())


def task_means(scores: pd.DataFrame) -> pd.DataFrame:
    """design, category, task, mean, std, n_seeds: the seed-averaged score of each design on each task.

    NaN scores are skipped (a task NaN in every seed stays NaN and drops out of the tests).
    """
    per_seed = seed_scores(scores)
    grouped = per_seed.groupby(["design", "category", "task"], sort=False)["score"]
    out = grouped.agg(mean="mean", std="std", n_seeds="count").reset_index()
    return out


def imputed_seed_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Per-seed scores where a NaN is replaced by that task's mean over the design's other seeds (tasks NaN in
    every seed are dropped), so a category's mean over seeds equals the mean of its seed-averaged task scores."""
    per_seed = seed_scores(scores)
    task_mean = per_seed.groupby(["design", "task"])["score"].transform("mean")
    return per_seed.assign(score=per_seed["score"].fillna(task_mean)).dropna(subset=["score"])


def category_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Long table: design, column (category | Mean (Task) | Mean (Category)), mean, std over seeds, n_seeds,
    n_tasks (tasks with a finite score) and total_tasks (tasks of that column across all designs).

    A NaN score in one seed is imputed by the task's mean over the other seeds (see imputed_seed_scores)."""
    per_seed = imputed_seed_scores(scores)
    if per_seed.empty:
        return pd.DataFrame(columns=["design", "column", "mean", "std", "n_seeds", "n_tasks", "total_tasks"])
    by_category = per_seed.groupby(["design", "seed", "category"])["score"].mean().rename("score").reset_index()
    by_category = by_category.rename(columns={"category": "column"})
    mean_task = per_seed.groupby(["design", "seed"])["score"].mean().rename("score").reset_index()
    mean_task["column"] = MEAN_TASK
    mean_category = by_category.groupby(["design", "seed"])["score"].mean().rename("score").reset_index()
    mean_category["column"] = MEAN_CATEGORY
    long = pd.concat([by_category, mean_task, mean_category], ignore_index=True)
    table = long.groupby(["design", "column"])["score"].agg(mean="mean", std="std", n_seeds="count").reset_index()

    tasks = per_seed.drop_duplicates(["design", "category", "task"])
    n_tasks = tasks.groupby(["design", "category"])["task"].nunique().rename("n_tasks").reset_index()
    n_tasks = n_tasks.rename(columns={"category": "column"})
    totals = {c: g["task"].nunique() for c, g in tasks.groupby("category")}
    all_tasks = tasks.groupby("design")["task"].nunique()
    totals[MEAN_TASK] = totals[MEAN_CATEGORY] = tasks["task"].nunique()
    table = table.merge(n_tasks, on=["design", "column"], how="left")
    for column in (MEAN_TASK, MEAN_CATEGORY):
        rows = table["column"] == column
        table.loc[rows, "n_tasks"] = table.loc[rows, "design"].map(all_tasks)
    table["n_tasks"] = table["n_tasks"].astype(int)
    table["total_tasks"] = table["column"].map(totals).astype(int)
    return table


def wide(table: pd.DataFrame, value: str = "mean") -> pd.DataFrame:
    """Rows = designs, columns = categories in the paper's order, then the two means."""
    if table.empty:
        return pd.DataFrame()
    frame = table.pivot(index="design", columns="column", values=value)
    categories = ordered_categories(c for c in frame.columns if c not in (MEAN_TASK, MEAN_CATEGORY))
    return frame.reindex(columns=categories + [MEAN_TASK, MEAN_CATEGORY])


def score_matrix(means: pd.DataFrame, category: str | None) -> pd.DataFrame:
    """tasks × designs of seed-averaged scores, restricted to tasks every design has a finite score on."""
    rows = means if category is None else means[means["category"] == category]
    return rows.pivot(index="task", columns="design", values="mean").dropna(axis=0, how="any")
