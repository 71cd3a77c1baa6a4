"""report.md and the compact stdout table."""
from __future__ import annotations

import math

import pandas as pd

from analysis.compare import ALL_TASKS
from analysis.designs import PRESETS, Design, display_order
from analysis.tables import MEAN_CATEGORY, MEAN_TASK, wide

RAW_MARK, HOLM_MARK, UNREACHABLE_MARK = "*", "†", "°"


def markdown_table(header: list[str], rows: list[list]) -> str:
    def cell(value):
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value, digits: int = 4, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    value = 0.0 if round(value, digits) == 0 else value   # no "-0.0000"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def fmt_p(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.4f}"


def median_with_ci(row) -> str:
    text = fmt(row["median_diff"], signed=True)
    if not math.isnan(row["median_ci_low"]):
        text += f" [{fmt(row['median_ci_low'], signed=True)}, {fmt(row['median_ci_high'], signed=True)}]"
    return text


def marks(row) -> str:
    out = RAW_MARK if row["significant_raw"] else ""
    out += HOLM_MARK if row["reject_holm"] else ""
    return out + (UNREACHABLE_MARK if row["p_unreachable"] else "")


def baseline_rows(stats: pd.DataFrame) -> dict[tuple[Design, str], pd.Series]:
    """(design, table column) → its vs_baseline test; Mean (Task) ↔ the all-tasks test (or the only category's)."""
    rows = stats[stats["comparison"] == "vs_baseline"] if len(stats) else stats
    tests = {(r["candidate_design"], r["category"]): r for _, r in rows.iterrows()}
    for design in {d for d, _ in tests}:
        own = [c for d, c in tests if d == design]
        pooled = tests.get((design, ALL_TASKS)) if ALL_TASKS in own else (tests[(design, own[0])] if len(own) == 1
                                                                          else None)
        if pooled is not None:
            tests[(design, MEAN_TASK)] = pooled
    return tests


def score_section(table: pd.DataFrame, labels: dict[Design, str], seeds: dict[Design, int]) -> str:
    """Every design found is a row, those without any finished cell too (all "—")."""
    designs = sorted(labels, key=display_order)
    means, stds = wide(table, "mean").reindex(designs), wide(table, "std").reindex(designs)
    n_tasks, totals = wide(table, "n_tasks").reindex(designs), wide(table, "total_tasks")
    n_categories = len(means.columns) - 2
    header = ["design", "seeds"] + [f"{c} ({n_categories} categories)" if c == MEAN_CATEGORY
                                    else f"{c} (n={int(totals[c].max())})" for c in means.columns]
    rows = []
    for design in sorted(means.index, key=display_order):
        row = [labels[design], seeds.get(design, 0) or "0 (no finished cell)"]
        for column in means.columns:
            value = fmt(means.loc[design, column])
            if value != "—" and not math.isnan(stds.loc[design, column]):
                value += f" ± {stds.loc[design, column]:.4f}"
            have, total = n_tasks.loc[design, column], totals[column].max()
            if value != "—" and not math.isnan(have) and have < total and column != MEAN_CATEGORY:
                value += f" ({int(have)}/{int(total)} tasks)"
            row.append(value)
        rows.append(row)
    return markdown_table(header, rows)


def difference_section(table: pd.DataFrame, stats: pd.DataFrame, labels: dict[Design, str],
                       baseline: tuple[str, str]) -> str:
    means, n_tasks, totals = wide(table, "mean"), wide(table, "n_tasks"), wide(table, "total_tasks")
    tests = baseline_rows(stats)
    header = ["design", "baseline"] + list(means.columns)
    rows = []
    for design in sorted(means.index, key=display_order):
        reference = Design(design.model, baseline[0], baseline[1], design.extra)
        if design == reference:
            continue
        row = [labels[design], labels.get(reference, reference.label())]
        for column in means.columns:
            if reference not in means.index:
                row.append("—")
                continue
            delta = means.loc[design, column] - means.loc[reference, column]
            test = tests.get((design, column))
            text = fmt(delta, signed=True) + (marks(test) if test is not None and column != MEAN_CATEGORY else "")
            have = min(n_tasks.loc[design, column], n_tasks.loc[reference, column])
            if text != "—" and column != MEAN_CATEGORY and have < totals[column].max():
                text += f" ({int(have)}/{int(totals[column].max())} tasks)"
            row.append(text)
        rows.append(row)
    return markdown_table(header, rows) if rows else "_No design besides the baseline._"


def comparison_section(stats: pd.DataFrame, preset: str) -> str:
    rows = stats[stats["comparison"] == preset]
    if rows.empty:
        return "_No pair of this comparison has scores in this sweep._"
    header = ["category", "reference", "candidate", "n", "W", "p", "p (Holm)", "rank-biserial",
              "median Δ [95% CI]", "HL Δ", "note"]
    body = []
    for _, r in rows.iterrows():
        note = "; ".join(x for x in (r["notes"], f"excluded: {r['excluded_tasks']}" if r["excluded_tasks"] else "")
                         if x)
        body.append([r["category"], r["reference"], r["candidate"], r["n"], fmt(r["W"], 1),
                     fmt_p(r["p"]) + (RAW_MARK if r["significant_raw"] else ""),
                     fmt_p(r["p_holm"]) + (HOLM_MARK if r["reject_holm"] else ""), fmt(r["rank_biserial"], 3),
                     median_with_ci(r), fmt(r["hodges_lehmann"], signed=True), note])
    family = rows["family"].iloc[0]
    size = int(rows["family_size"].max())
    return f"Holm family: `{family}` ({size} test(s) with a p-value).\n\n" + markdown_table(header, body)


def problems_section(problems) -> str:
    if not problems:
        return "None: every cell found is done and every score is finite."
    return markdown_table(["kind", "where", "detail"], [[p.kind, p.where, p.detail] for p in problems])


def render(result) -> str:
    cfg, coll, settings = result.config, result.collection, result.config.settings
    labels, table, stats = result.labels, result.table, result.stats
    counts = coll.cells["status"].value_counts().to_dict() if len(coll.cells) else {}
    seeds = (coll.scores.dropna(subset=["score"]).groupby("design")["seed"].nunique().to_dict()
             if len(coll.scores) else {})
    baseline_label = f"{cfg.baseline[0]} + {cfg.baseline[1]}"
    lines = [
        f"# Analysis of {', '.join(f'`{r}`' for r in coll.roots)}",
        "",
        f"Generated {result.created} with `{result.command}`.",
        "",
        f"**Cells:** {len(coll.cells)} found ({', '.join(f'{n} {s}' for s, n in sorted(counts.items())) or 'none'}); "
        f"{len(set(coll.scores['design'])) if len(coll.scores) else 0} design(s) with scores; "
        f"{coll.scores['task'].nunique() if len(coll.scores) else 0} task(s). "
        f"{len(result.problems)} problem(s) listed at the end.",
        "",
        f"**Tests:** Wilcoxon signed-rank (`scipy.stats.wilcoxon`, alternative=`{settings.alternative}` on "
        f"candidate − reference, zero_method=`{settings.zero_method}`, method=`{settings.method}`, "
        f"correction={settings.correction}) paired by task over seed-averaged main scores, differences rounded to "
        f"{settings.decimals} decimals; Holm (`statsmodels multipletests(method='holm')`) within each "
        f"`{cfg.family}` family; α = {settings.alpha:g}; effect size = matched-pairs rank-biserial "
        f"(R+ − R−)/(R+ + R−) with the median difference and its 95% percentile-bootstrap CI over tasks "
        f"(2,000 resamples, n ≥ 3); HL = Hodges–Lehmann median of Walsh averages. NaN scores (listed under "
        f"Problems) never enter a test: a task keeps the mean of its finite seeds, or drops out if it has none. "
        f"An exact two-sided test over n non-zero differences cannot give p below 2/2^n, so n ≤ 5 can never "
        f"reach p < 0.05 (marked {UNREACHABLE_MARK}).",
        "",
        "## Scores by category",
        "",
        "Mean of the main score over the tasks of each category, then mean ± std over seeds. "
        "`Mean (Task)`: over all tasks; `Mean (Category)`: over category means.",
        "",
        score_section(table, labels, seeds) if len(table) else "_No scores._",
        "",
        f"## Difference from the baseline ({baseline_label})",
        "",
        f"Design − baseline of the same model. {RAW_MARK} p < {settings.alpha:g} uncorrected (the paper's "
        f"criterion); {HOLM_MARK} Holm-adjusted p < {settings.alpha:g}; {UNREACHABLE_MARK} p < {settings.alpha:g} "
        f"unreachable with this many datasets. `Mean (Task)` is tested over all tasks pooled.",
        "",
        difference_section(table, stats, labels, cfg.baseline) if len(table) else "_No scores._",
        "",
        "## Comparisons",
    ]
    for preset in cfg.presets:
        lines += ["", f"### {preset}: {PRESETS[preset][0]}", "", comparison_section(stats, preset)]
    if result.friedman:
        lines += ["", "## Friedman tests (all designs with scores on the same tasks)", "",
                  markdown_table(["category", "designs", "tasks", "χ²", "p"], result.friedman)]
    if result.plot_notes or result.files.get("plots"):
        lines += ["", "## Plots", ""]
        lines += [f"![{p.stem}](plots/{p.name})" for p in result.files.get("plots", [])]
        lines += [""] + [f"- {note}" for note in result.plot_notes]
    lines += ["", "## Problems", "", problems_section(result.problems), ""]
    return "\n".join(lines)


def compact(result) -> str:
    """Designs × categories (mean over seeds) with the difference from the baseline and its marks."""
    table = result.table
    if table.empty:
        return "no scores found"
    means = wide(table, "mean").drop(columns=[MEAN_CATEGORY]).reindex(sorted(result.labels, key=display_order))
    tests = baseline_rows(result.stats)
    out = pd.DataFrame(index=[result.labels[d] for d in sorted(means.index, key=display_order)],
                       columns=list(means.columns), dtype=object)
    for design in sorted(means.index, key=display_order):
        reference = Design(design.model, result.config.baseline[0], result.config.baseline[1], design.extra)
        for column in means.columns:
            text = fmt(means.loc[design, column])
            if design != reference and reference in means.index and text != "—":
                delta = means.loc[design, column] - means.loc[reference, column]
                test = tests.get((design, column))
                text += f" ({fmt(delta, signed=True)}{marks(test) if test is not None else ''})"
            out.loc[result.labels[design], column] = text
    return out.to_string()
