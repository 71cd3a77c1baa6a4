"""report.md and the compact stdout table."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis import mixing, reach
from analysis.compare import ALL_TASKS
from analysis.cost import cost_section
from analysis.designs import ALL, Design, describe_preset, display_order
from analysis.factors import BASE_DIMENSIONS as BASE_ORDER
from analysis.family import PRIMARY
from analysis.stats import min_p_value
from analysis.tables import IN_DOMAIN, MEAN_CATEGORY, MEAN_TASK, MEANS, is_in_domain, wide

RAW_MARK, HOLM_MARK, UNREACHABLE_MARK, SEED_MARK = "*", "†", "°", "‡"


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


def baseline_rows(stats: pd.DataFrame, baseline: tuple[str, str]) -> dict[tuple[Design, str], pd.Series]:
    """(design, table column) → its vs_baseline test (for a design pooled over the models: its test against the
    baseline pooled likewise); Mean (Task) ↔ the pooled test (or the only category's)."""
    def against_baseline(r) -> bool:
        if "vs_baseline" in r["comparisons"].split(", "):
            return True
        candidate, reference = r["candidate_design"], r["reference_design"]
        return candidate.model == ALL and reference.model == ALL and candidate.extra == reference.extra and \
            (reference.pooling, reference.attention) == tuple(baseline)

    rows = stats[stats.apply(against_baseline, axis=1)] if len(stats) else stats
    tests = {(r["candidate_design"], r["category"]): r for _, r in rows.iterrows()}
    for design in {d for d, _ in tests}:
        own = [c for d, c in tests if d == design and not is_in_domain(c)]
        pooled = tests.get((design, ALL_TASKS)) if ALL_TASKS in own else (tests[(design, own[0])] if len(own) == 1
                                                                          else None)
        if pooled is not None:
            tests[(design, MEAN_TASK)] = pooled
    return tests


def _header(column: str, totals: pd.DataFrame, n_categories: int) -> str:
    if column == MEAN_CATEGORY:
        return f"{column} ({n_categories} categories)"
    return f"{column} (n={int(totals[column].max())})"


def score_section(table: pd.DataFrame, labels: dict[Design, str], seeds: dict[Design, int]) -> str:
    """Every design found is a row, those without any finished cell too (all "—")."""
    designs = sorted(labels, key=display_order)
    means, stds = wide(table, "mean").reindex(designs), wide(table, "std").reindex(designs)
    n_tasks, totals = wide(table, "n_tasks").reindex(designs), wide(table, "total_tasks")
    n_categories = sum(1 for c in means.columns if c not in MEANS and not is_in_domain(c))
    header = ["design", "seeds"] + [_header(c, totals, n_categories) for c in means.columns]
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
    tests = baseline_rows(stats, tuple(baseline))
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


def _mde(row) -> str:
    if not math.isfinite(row["mde_dz"]):
        return "none (too few tasks)"
    text = f"{row['mde_dz']:.2f}"
    return text + (f" ({row['mde']:.4f})" if math.isfinite(row["mde"]) else "")


def _seed_p(row, adjusted: bool) -> str:
    if math.isnan(row["p_seed"]):
        return "—"
    text = fmt_p(row["p_seed"]) + (RAW_MARK if row["p_seed"] < row["alpha"] else "")
    if adjusted:
        text += f" / {fmt_p(row['p_seed_holm'])}" + (HOLM_MARK if row["reject_seed_holm"] else "")
    return text + f" [{fmt(row['seed_ci_low'], signed=True)}, {fmt(row['seed_ci_high'], signed=True)}]"


def tests_table(rows: pd.DataFrame, in_family: bool) -> str:
    header = ["category", "reference", "candidate", "comparisons", "n", "W", "p",
              *(["p (Holm)"] if in_family else []), "rank-biserial", "median Δ [95% CI]", "HL Δ",
              "seed-aware p" + (" / Holm" if in_family else "") + " [95% CI of mean Δ]", "MDE d_z (score)",
              "note"]
    body = []
    for _, r in rows.iterrows():
        note = "; ".join(x for x in ("" if in_family else r["family_note"], r["notes"],
                                     f"excluded: {r['excluded_tasks']}" if r["excluded_tasks"] else "") if x)
        body.append([r["category"], r["reference"], r["candidate"], r["comparisons"], r["n"], fmt(r["W"], 1),
                     fmt_p(r["p"]) + (RAW_MARK if r["significant_raw"] else "")
                     + (UNREACHABLE_MARK if r["p_unreachable"] else ""),
                     *([fmt_p(r["p_holm"]) + (HOLM_MARK if r["reject_holm"] else "")] if in_family else []),
                     fmt(r["rank_biserial"], 3), median_with_ci(r), fmt(r["hodges_lehmann"], signed=True),
                     _seed_p(r, in_family), _mde(r), note])
    return markdown_table(header, body)


def family_statement(result) -> str:
    cfg, family, settings = result.config, result.family, result.config.settings
    presets = ", ".join(f"`{p}` ({describe_preset(p, result.config.twin)})" for p in family.presets) or "none"
    basis = f"The family is {family.basis}. " if family.basis else ""
    text = [basis + f"Pre-registered before any score is read: the per-category tests of {presets} on out-of-domain "
            f"categories form **one** Holm family (`statsmodels multipletests(method='holm')`, α = "
            f"{settings.alpha:g}). Each test appears once in this report, with one adjusted p. Not in the family, "
            f"reported with their raw p only: the tests pooled over all out-of-domain tasks, in-domain categories, "
            f"and pairs that only other presets name."]
    if family.screen:
        text.append(f" Tests that no outcome could make significant are screened out by their number of tasks "
                    f"alone: Holm applied to each test's smallest attainable p (2/2^n two-sided) is the best it "
                    f"could get, and the family kept is the largest set, more tasks first, in which every member "
                    f"can still reach α ({family.registered} registered, {len(family.screened)} screened out, "
                    f"m = {family.size}).")
    else:
        text.append(f" No power screen (`--no-power-screen`): all {family.size} registered tests stay in the family "
                    f"and those that cannot reach α are marked {UNREACHABLE_MARK}.")
    text.append(f" The minimum detectable effect (MDE) is the shift of normal paired differences, in SDs of the "
                f"differences (d_z; in score units: × their observed SD), that the signed-rank test at this n "
                f"detects with power {cfg.power:g}; for family members at Holm's strictest step α/m, otherwise at "
                f"α. The seed-aware p (where both designs have ≥ 2 seeds and the test ≥ 6 tasks) is a crossed bootstrap over tasks × "
                f"seeds of the mean difference (10,000 resamples, tasks and each design's seeds drawn "
                f"independently, so a lucky training run counts once, not once per task); it is Holm-adjusted over "
                f"the same family.")
    return "".join(text)


def reachability_section(result) -> str:
    """Every test that cannot reach α (or gets no seed-aware test) at these tasks and seeds, with why and what
    would make it reachable; listed before any result so that an empty family is never a silent outcome."""
    table = reach.unreachable(result.stats, result.family, result.config.settings)
    if table.empty:
        return (f"Every test can reach α = {result.config.settings.alpha:g} with the tasks and seeds it has, and "
                f"every pair with ≥ 2 seeds per design gets the seed-aware test.")
    intro = (f"{reach.summary(table)} at α = {result.config.settings.alpha:g} with the tasks and seeds of this "
             f"sweep. They are still run and reported (raw p), never dropped. *Reachable with* is what the "
             f"paired test needs per test (in the family: every test of the registered family at that many "
             f"tasks, Holm's first step m·2/2^n < α) and what the seed-aware test needs (≥ 2 seeds per design, "
             f"≥ {reach.MIN_TASKS} tasks).")
    return intro + "\n\n" + markdown_table(list(table.columns[:-1]) + ["pairs"], table.values.tolist())


def _moved(row) -> tuple[bool, str]:
    """Whether a factor test says the category moved: the seed-aware test where it ran (Holm-adjusted in the
    family), else the paired Wilcoxon (Holm-adjusted in the family)."""
    member = row["family"] == PRIMARY
    if not math.isnan(row["p_seed"]):
        p = row["p_seed_holm"] if member else row["p_seed"]
        return bool(p < row["alpha"]), f"seed-aware p{' (Holm)' if member else ''} = {fmt_p(p)}"
    p = row["p_holm"] if member else row["p"]
    return bool(p < row["alpha"]), f"Wilcoxon p{' (Holm)' if member else ''} = {fmt_p(p)} (no seed-aware test)"


def _effect_label(row) -> str:
    return f"{row['factor']}: {row['candidate']} − {row['reference']} [{row['effect']}]"


def factor_rows(stats: pd.DataFrame) -> pd.DataFrame:
    """The tests of single-factor pairs, grouped by factor (in the order the factors were found), simple effects
    before main effects."""
    if not len(stats) or "effect" not in stats:
        return stats.iloc[0:0]
    rows = stats[stats["effect"].astype(str) != ""]
    names = sorted(set(rows["factor"]), key=lambda f: (BASE_ORDER.index(f) if f in BASE_ORDER else len(BASE_ORDER), f))
    key = rows["factor"].map({f: i for i, f in enumerate(names)}) * 2 + rows["effect"].str.startswith("main")
    return rows.iloc[np.argsort(key.to_numpy(int), kind="stable")]


def factor_section(result) -> str:
    """Which factor moved which category: mean difference per effect (rows) and category (columns) with the
    marks of both tests, then one line per factor effect that says what moved."""
    rows = factor_rows(result.stats)
    if rows.empty:
        return "_The designs vary in no single factor: no factor comparisons._"
    columns = list(dict.fromkeys(c for c in rows["category"] if c != ALL_TASKS))
    columns += [ALL_TASKS] if (rows["category"] == ALL_TASKS).any() else []
    table, verdicts = [], []
    for (label, _), group in rows.groupby([rows.apply(_effect_label, axis=1), rows["effect"].str.startswith("main")],
                                          sort=False):
        by_category = {r["category"]: r for _, r in group.iterrows()}
        line, moved = [label], []
        for column in columns:
            r = by_category.get(column)
            if r is None:
                line.append("—")
                continue
            seed_hit, text = _moved(r)
            seed_mark = SEED_MARK if not math.isnan(r["p_seed"]) and seed_hit else ""
            line.append(fmt(r["mean_diff"], signed=True) + marks(r) + seed_mark)
            if seed_hit and column != ALL_TASKS:
                moved.append(f"{column} {fmt(r['mean_diff'], signed=True)} ({text})")
        table.append(line)
        verdicts.append(f"- {label}: " + ("moved " + "; ".join(moved) if moved else
                                          "no category moved beyond what these tasks and seeds can detect") + ".")
    legend = (f"Mean paired difference (candidate − reference) over the tasks of each category, seed-averaged. "
              f"{RAW_MARK} Wilcoxon p < α; {HOLM_MARK} Holm-adjusted p < α (family); {SEED_MARK} seed-aware p < α "
              f"(Holm-adjusted for family members); {UNREACHABLE_MARK} the Wilcoxon cannot reach α here. A simple "
              f"effect holds the other factors fixed; a main effect averages over them (full factorials only).")
    return "\n\n".join([legend, markdown_table(["factor effect"] + columns, table), "\n".join(verdicts)])


def factor_text_table(result, digits: int = 4) -> str:
    """Plain-text version of the factor table (the console's)."""
    rows = factor_rows(result.stats)
    if rows.empty:
        return ""
    columns = list(dict.fromkeys(c for c in rows["category"] if c != ALL_TASKS))
    lines = []
    for label, group in rows.groupby(rows.apply(_effect_label, axis=1), sort=False):
        by_category = {r["category"]: r for _, r in group.iterrows()}
        cells = []
        for column in columns:
            r = by_category.get(column)
            if r is not None:
                seed_hit, _ = _moved(r)
                cells.append(f"{column} {fmt(r['mean_diff'], digits, signed=True)}{marks(r)}"
                             f"{SEED_MARK if seed_hit and not math.isnan(r['p_seed']) else ''}")
        lines.append(f"{label}: " + ", ".join(cells))
    return "\n".join(lines)


PROVENANCE_NAMES = {"code": "code", "libraries": "library", "device": "device", "inputs": "input",
                    "model_revision": "model revision", "identity_version": "identity format"}


def provenance_section(result) -> str:
    """Code, libraries, devices, inputs and model revision of the cells whose scores are used, each value with the
    designs it belongs to; then what differs between cells averaged as seeds of one design, by name."""
    cells = result.collection.cells
    used = cells[cells["n_scores"] > 0] if len(cells) else cells
    if used.empty:
        return "_No cell with scores._"
    labels = result.labels
    values: dict[str, dict[str, list]] = {}
    recorded = 0
    for _, cell in used.iterrows():
        provenance = cell["provenance"] or {}
        recorded += bool(cell["provenance_recorded"])
        for key, value in mixing.flatten(provenance).items() if provenance else ():
            values.setdefault(key, {}).setdefault(value.strip('"'), []).append(cell["design"])
    lines = [f"From each cell's `cell.json` (`provenance`; cells written before it was recorded give their library "
             f"versions only): {recorded} of {len(used)} cell(s) with scores record a provenance."]
    if values:
        all_designs = set(used["design"])
        rows = []
        for key in sorted(values, key=lambda k: (list(PROVENANCE_NAMES).index(k.split(".")[0])
                                                 if k.split(".")[0] in PROVENANCE_NAMES else 99, k)):
            group = key.split(".")[0]
            name = PROVENANCE_NAMES.get(group, group) + (f" {key.split('.', 1)[1]}" if "." in key else "")
            for value, designs in sorted(values[key].items()):
                shown = ("all designs" if set(designs) == all_designs and len(values[key]) == 1 else
                         ", ".join(labels.get(d, d.label()) for d in sorted(set(designs), key=display_order)))
                rows.append([name, f"`{value}`", shown, len(designs)])
        lines += ["", markdown_table(["entry", "value", "designs", "cells"], rows)]
    flagged = [(m.design, d) for m in result.collection.mixes for d in m.flagged]
    pooled = [(m.design, d) for m in result.collection.mixes for d in m.pooled]
    lines += ["", "**Within one design** (cells averaged as seeds): "
              + ("no cells differ in code, libraries, device, inputs or model revision." if not flagged else
                 "these differ between cells averaged as seeds (code, device or identity format may; named here "
                 "so that a changed number can be traced):")]
    lines += [f"- {design}: {diff.describe()}" for design, diff in flagged]
    if result.collection.pool_over:
        lines += ["", f"**Pooled over** (`--pool-over {','.join(result.collection.pool_over)}`): "
                  + ("no cells of one design differed in these." if not pooled else
                     "cells of one design that differ in these were averaged as seeds:")]
        lines += [f"- {design}: {diff.describe()}" for design, diff in pooled]
    return "\n".join(lines)


def family_conclusions(result) -> str:
    stats, family = result.stats, result.family
    members = stats[stats["family"] == PRIMARY] if len(stats) else stats
    lines = []
    if len(members):
        significant = members[members["reject_holm"]]
        lines.append(f"- Significant after Holm ({len(significant)} of {family.size}): "
                     + ("; ".join(f"{r['candidate']} vs {r['reference']} on {r['category']} "
                                  f"(Δ median {fmt(r['median_diff'], signed=True)}, p = {fmt_p(r['p'])}, "
                                  f"Holm {fmt_p(r['p_holm'])})" for _, r in significant.iterrows()) or "none") + ".")
        seeded = members[members["reject_seed_holm"]]
        if members["p_seed"].notna().any():
            lines.append(f"- Seed-aware test significant after Holm ({len(seeded)} of {family.size}): "
                         + ("; ".join(f"{r['candidate']} vs {r['reference']} on {r['category']}"
                                      for _, r in seeded.iterrows()) or "none") + ".")
        finite = members["mde_dz"][np.isfinite(members["mde_dz"])]
        if len(finite):
            span = f"{finite.min():.2f}" + (f"–{finite.max():.2f}" if finite.max() > finite.min() else "")
            lines.append(f"- Detectable at power {result.config.power:g}: shifts of {span} SDs of the paired "
                         f"differences (MDE d_z of the family's tests at α/m).")
    else:
        lines.append("- The family is empty: no pre-registered test can reach significance in this sweep.")
    if family.screened:
        by_n: dict[int, list[str]] = {}
        for category, n, _ in family.screened:
            by_n.setdefault(n, []).append(category)
        lines.append("- Could not be significant whatever the scores (screened out; raw p only): "
                     + "; ".join(f"n = {n}: {len(c)} test(s) ({', '.join(sorted(set(c)))}, min p "
                                 f"{min_p_value(n, result.config.settings.alternative):.3g})"
                                 for n, c in sorted(by_n.items())) + ".")
    return "\n".join(lines)


def problems_section(problems) -> str:
    if not problems:
        return "None: every cell found is done and every score is finite."
    return markdown_table(["kind", "where", "detail"], [[p.kind, p.where, p.detail] for p in problems])


def domain_statement(coll) -> str:
    scores = coll.scores
    tasks = scores.drop_duplicates("task") if len(scores) else scores
    inside = sorted(tasks.loc[tasks["in_domain"].astype(bool), "task"]) if len(tasks) else []
    if not inside:
        return ("**Domains:** no task is marked in-domain (`in_domain` in `scores.json`; missing = out-of-domain), "
                "so every task is in the primary result.")
    return (f"**Domains:** out-of-domain categories are the primary result (tables, means and the Holm family). "
            f"{len(inside)} task(s) whose text comes from the training source are marked in-domain and reported "
            f"separately as `<Category>{IN_DOMAIN}` columns and `Mean (in-domain Task)`: {', '.join(inside)}.")


def render(result) -> str:
    cfg, coll, settings = result.config, result.collection, result.config.settings
    labels, table, stats = result.labels, result.table, result.stats
    counts = coll.cells["status"].value_counts().to_dict() if len(coll.cells) else {}
    seeds = (coll.scores.dropna(subset=["score"]).groupby("design")["seed"].nunique().to_dict()
             if len(coll.scores) else {})
    if len(table):  # pooled designs have no cells: the seed labels their members share
        seeds = {**table.groupby("design")["n_seeds"].max().astype(int).to_dict(), **seeds}
    baseline_label = f"{cfg.baseline[0]} + {cfg.baseline[1]}"
    members = stats[stats["family"] == PRIMARY] if len(stats) else stats
    others = stats[stats["family"] != PRIMARY] if len(stats) else stats
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
        domain_statement(coll),
        "",
        f"**Tests:** Wilcoxon signed-rank (`scipy.stats.wilcoxon`, alternative=`{settings.alternative}` on "
        f"candidate − reference, zero_method=`{settings.zero_method}`, method=`{settings.method}`, "
        f"correction={settings.correction}) paired by task over seed-averaged main scores (the paper's test), "
        f"differences rounded to {settings.decimals} decimals; effect size = matched-pairs rank-biserial "
        f"(R+ − R−)/(R+ + R−) with the median difference and its 95% percentile-bootstrap CI over tasks "
        f"(2,000 resamples, n ≥ 3); HL = Hodges–Lehmann median of Walsh averages. NaN scores (listed under "
        f"Problems) never enter a test: a task keeps the mean of its finite seeds, or drops out if it has none. "
        f"An exact two-sided test over n non-zero differences cannot give p below 2/2^n, so n ≤ 5 can never "
        f"reach p < 0.05 (marked {UNREACHABLE_MARK}).",
        "",
        "## Tests that cannot reach α",
        "",
        reachability_section(result),
        "",
        "## Scores by category",
        "",
        "Mean of the main score over the tasks of each category, then mean ± std over seeds. "
        "`Mean (Task)`: over all out-of-domain tasks; `Mean (Category)`: over out-of-domain category means.",
        "",
        score_section(table, labels, seeds) if len(table) else "_No scores._",
        "",
        f"## Difference from the baseline ({baseline_label})",
        "",
        f"Design − baseline of the same model. {RAW_MARK} p < {settings.alpha:g} uncorrected (the paper's "
        f"criterion); {HOLM_MARK} Holm-adjusted p < {settings.alpha:g} in the pre-registered family; "
        f"{UNREACHABLE_MARK} p < {settings.alpha:g} unreachable (with the correction, for family members). "
        f"`Mean (Task)` is tested over all out-of-domain tasks pooled.",
        "",
        difference_section(table, stats, labels, cfg.baseline) if len(table) else "_No scores._",
        "",
        "## Effects of the grid's factors",
        "",
        factor_section(result),
        "",
        "## The pre-registered Holm family",
        "",
        family_statement(result),
        "",
        family_conclusions(result),
        "",
        f"### Family members (m = {result.family.size})",
        "",
        tests_table(members, in_family=True) if len(members) else "_No test is in the family._",
        "",
        "### Other tests (uncorrected p; not in the family)",
        "",
        "Each distinct pair and category once; `comparisons` names every preset that asks for it: "
        + "; ".join(f"`{p}`: {describe_preset(p, cfg.twin)}" for p in cfg.presets) + ".",
        "",
        tests_table(others, in_family=False) if len(others) else "_None._",
    ]
    if result.friedman:
        lines += ["", "## Friedman tests (all designs with scores on the same tasks; exploratory)", "",
                  markdown_table(["category", "designs", "tasks", "χ²", "p"], result.friedman)]
    if result.plot_notes or result.files.get("plots"):
        lines += ["", "## Plots", ""]
        lines += [f"![{p.stem}](plots/{p.name})" for p in result.files.get("plots", [])]
        lines += [""] + [f"- {note}" for note in result.plot_notes]
    lines += ["", "## Provenance", "", provenance_section(result)]
    lines += ["", "## Cost", "", cost_section(coll.cells, labels, markdown_table)]
    lines += ["", "## Problems", "", problems_section(result.problems), ""]
    return "\n".join(lines)


def compact(result) -> str:
    """Designs × categories (mean over seeds) with the difference from the baseline and its marks."""
    table = result.table
    if table.empty:
        return "no scores found"
    means = wide(table, "mean").drop(columns=[MEAN_CATEGORY], errors="ignore")
    means = means.reindex(sorted(result.labels, key=display_order))
    tests = baseline_rows(result.stats, tuple(result.config.baseline))
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


def category_text_table(result, digits: int = 3) -> str:
    """Plain-text design × category table of seed-mean scores, task counts in the header (``n/N`` in a cell
    where a design lacks tasks), out-of-domain columns first, in-domain ones after a ``|``."""
    table = result.table
    if table.empty:
        return "no scores found"
    designs = sorted(result.labels, key=display_order)
    means = wide(table, "mean").drop(columns=[MEAN_CATEGORY], errors="ignore").reindex(designs)
    n_tasks, totals = wide(table, "n_tasks").reindex(designs), wide(table, "total_tasks")
    seeds = table[table["column"].isin(means.columns)].groupby("design")["n_seeds"].max()
    columns = list(means.columns)
    header = ["design", "seeds"] + [f"{c.replace(IN_DOMAIN, ' in-domain')} ({int(totals[c].max())})"
                                    for c in columns]
    rows = []
    for design in designs:
        row = [result.labels[design], str(int(seeds.get(design, 0)))]
        for column in columns:
            value = means.loc[design, column]
            text = "—" if not np.isfinite(value) else f"{value:.{digits}f}"
            have, total = n_tasks.loc[design, column], int(totals[column].max())
            if text != "—" and np.isfinite(have) and have < total:
                text += f" ({int(have)}/{total})"
            row.append(text)
        rows.append(row)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    split = next((i + 2 for i, c in enumerate(columns) if is_in_domain(c)), None)

    def line(cells):
        parts = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        if split is not None:
            parts.insert(split, "|")
        return "  ".join(parts).rstrip()

    return "\n".join([line(header)] + [line(r) for r in rows])
