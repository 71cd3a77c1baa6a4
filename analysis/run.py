"""analyze(): collect cells → seed means → comparisons → tables, plots, report.md (all writes atomic)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import pandas as pd

from analysis import mixing, plots
from analysis.collect import Collection, Problem, collect
from analysis.cost_plan import cost_section
from analysis.compare import run_comparisons
from analysis.designs import (AUTO_FAMILY, DEFAULT_BASELINE, DEFAULT_FAMILY, DEFAULT_PRESETS, Design,
                              PairContext, parse_twin, resolve_family, resolve_presets)
from analysis.errors import OptionError
from analysis.factors import over_models
from analysis.family import Family
from analysis.long_scores import LONG_FILE, write_long
from analysis.report import category_text_table, compact, render
from analysis.stats import WilcoxonSettings, friedman
from analysis.tables import (category_table, imputed_seed_scores, label_domains, ordered_categories, score_matrix,
                             task_means)
from cellfiles.atomic import write_csv, write_text

log = logging.getLogger(__name__)


@dataclass
class AnalysisConfig:
    by: tuple[str, ...] = ()                    # extra config keys that split designs (e.g. "train.lr")
    baseline: tuple[str, str] = DEFAULT_BASELINE
    twin: str | None = None                     # "KEY=VALUE": the twins preset pairs each design with its twin at
    #                                             that value (KEY joins `by`; e.g. train.max_steps=0 = zero-shot)
    presets: tuple[str, ...] = DEFAULT_PRESETS
    settings: WilcoxonSettings = field(default_factory=WilcoxonSettings)
    family: tuple[str, ...] = DEFAULT_FAMILY    # presets whose out-of-domain per-category tests form the one
    #                                             pre-registered Holm family ("paper" = the paper's comparisons;
    #                                             "auto": those where the sweep has their designs, else "factors")
    power_screen: bool = True                   # drop family tests that cannot reach Holm p < alpha (by n alone)
    power: float = 0.8                          # power of the minimum detectable effect
    pooled: bool = True                         # also test over all out-of-domain tasks pooled (not in the family)
    include_unfinished: bool = False            # use scores of cells whose status is not "done"
    pool_over: tuple[str, ...] = ()             # keys whose differences between cells of one design are averaged
    #                                             over as seeds (else refused; analysis/mixing.py)
    plots: bool = True
    cd_min_tasks: int = 6                       # fewest shared tasks for a CD diagram (2/2^6 < 0.05)
    out_dir: str | Path | None = None           # default: <first sweep dir>/analysis
    wandb: bool | str = False                   # log tables + plots to the sweep's W&B group; "auto": when the
    #                                             cells were logged to W&B (their logger config says so)
    wandb_project: str | None = None
    wandb_entity: str | None = None
    wandb_mode: str | None = None


@dataclass
class AnalysisResult:
    config: AnalysisConfig
    collection: Collection
    out_dir: Path
    means: pd.DataFrame          # design, category, task, mean, std, n_seeds
    table: pd.DataFrame          # long category table
    stats: pd.DataFrame
    problems: list
    labels: dict[Design, str]
    family: Family | None = None
    friedman: list[list] = field(default_factory=list)
    plot_notes: list[str] = field(default_factory=list)
    files: dict = field(default_factory=dict)
    created: str = ""
    command: str = ""
    report: str = ""

    def summary(self) -> str:
        return compact(self)

    def category_table(self) -> str:
        """Compact design × category text table with task counts (what a sweep prints last)."""
        return category_text_table(self)


def design_labels(designs) -> dict[Design, str]:
    with_model = len({d.model for d in designs}) > 1
    return {d: d.label(with_model=with_model) for d in designs}


def analyze(sweep_dirs, config: AnalysisConfig | None = None, command: str | None = None,
            **overrides) -> AnalysisResult:
    """Analyse one or several sweep directories; writes <out_dir>/{tables.csv, categories.csv, stats.csv,
    cells.csv, report.md, plots/*.png} and returns everything it computed.

    ``overrides`` are AnalysisConfig fields (``analyze(d, presets=["paper"], family="category")``); ``command``
    is recorded in report.md (default: the equivalent ``python -m analysis`` call)."""
    unknown = sorted(set(overrides) - {f.name for f in fields(AnalysisConfig)})
    if unknown:
        raise OptionError(f"unknown analysis option(s) {', '.join(unknown)}; valid: "
                          f"{', '.join(f.name for f in fields(AnalysisConfig))}")
    config = replace(config or AnalysisConfig(), **overrides)
    if isinstance(config.family, str):
        config.family = (config.family,)
    config.family = tuple(resolve_presets(config.family))
    config.presets = tuple(p for p in resolve_presets(tuple(config.presets) + config.family)   # family tests run
                           if p != AUTO_FAMILY)
    twin = parse_twin(config.twin) if config.twin else None
    if twin:
        config.by = tuple(config.by) + (() if twin[0] in config.by else (twin[0],))
        config.presets = tuple(config.presets) + (() if "twins" in config.presets else ("twins",))
    if "twins" in config.presets and twin is None:   # options are checked before any cell is read
        raise OptionError("comparison preset 'twins' needs the twin setting: --twin KEY=VALUE "
                          "(e.g. --twin train.max_steps=0)")
    if config.wandb not in (True, False, "auto"):
        raise OptionError(f"wandb must be true, false or 'auto', got {config.wandb!r}")
    if not 0 < config.power < 1:
        raise OptionError(f"power must be in (0, 1), got {config.power}")
    dirs = [sweep_dirs] if isinstance(sweep_dirs, (str, Path)) else list(sweep_dirs)
    if isinstance(config.pool_over, str):
        config.pool_over = (config.pool_over,)
    collection = collect(dirs, by=tuple(config.by), include_unfinished=config.include_unfinished,
                         pool_over=tuple(config.pool_over))
    if any(mix.refused for mix in collection.mixes):
        raise mixing.refusal(collection.mixes)
    out_dir = Path(config.out_dir) if config.out_dir else Path(dirs[0]) / "analysis"

    scores = label_domains(collection.scores)
    means = task_means(scores) if len(scores) else pd.DataFrame(
        columns=["design", "category", "in_domain", "task", "mean", "std", "n_seeds"])
    scored = set(means["design"])
    # with several models, each design every model has also pooled over them (the paper's pooled table)
    context = PairContext(tuple(config.baseline), twin)
    pooled = over_models(sorted(scored), context)
    table = category_table(scores, marginals=pooled)
    labels = {**design_labels(set(collection.designs) | scored), **{d: d.label() for d in pooled}}
    per_seed = imputed_seed_scores(scores) if len(scores) else None
    config.family, family_basis = resolve_family(config.family, sorted(scored), context)
    config.presets = tuple(resolve_presets(tuple(config.presets) + config.family))
    stats, comparison_problems, family = run_comparisons(
        means, list(config.presets), tuple(config.baseline), config.settings, config.family, config.pooled, labels,
        per_seed=per_seed, power=config.power, screen=config.power_screen, twin=twin)
    problems = list(collection.problems) + comparison_problems
    if scored and not any((d.pooling, d.attention) == tuple(config.baseline) for d in scored):
        problems.append(Problem("baseline missing", f"{config.baseline[0]} + {config.baseline[1]}",
                                "no cell of the baseline design has scores: no differences or vs_baseline tests "
                                "(choose another with --baseline POOLING,ATTENTION)"))
    result = AnalysisResult(config, collection, out_dir, means, table, stats, problems, labels,
                            created=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                            command=command or "python -m analysis " + " ".join(str(d) for d in dirs))
    family.basis = family_basis
    result.family = family
    result.friedman = friedman_rows(means)
    _write(result)
    if config.wandb:
        from analysis.wandb_log import log_to_wandb, logged_to_wandb

        if config.wandb is True or logged_to_wandb(result):
            result.files["wandb_run"] = log_to_wandb(result)
    return result


def friedman_rows(means: pd.DataFrame) -> list[list]:
    rows = []
    if means.empty:
        return rows
    for category in ordered_categories(set(means["category"])) + [None]:
        matrix = score_matrix(means, category)
        outcome = friedman(matrix.to_numpy()) if matrix.shape[1] >= 3 else None
        if outcome:
            rows.append([category or "All tasks", matrix.shape[1], matrix.shape[0], f"{outcome[0]:.3f}",
                         f"{outcome[1]:.4g}"])
    return rows


def _write(result: AnalysisResult) -> None:
    out, files = result.out_dir, result.files
    coll = result.collection
    long = coll.scores.assign(design=coll.scores["design"].map(lambda d: result.labels[d]))
    files["tables"] = write_csv(out / "tables.csv", long[["design", "model", "pooling", "attention", "seed", "task",
                                                          "category", "in_domain", "score", "cell", "grid"]])
    files["scores_long"] = write_long(out / LONG_FILE, coll.scores, result.labels)
    table = result.table.assign(design=result.table["design"].map(lambda d: result.labels[d]))
    files["categories"] = write_csv(out / "categories.csv", table)
    files["stats"] = write_csv(out / "stats.csv", result.stats.drop(columns=["reference_design",
                                                                             "candidate_design"]))
    cells = coll.cells.drop(columns=["config", "design", "provenance", "cost"]).assign(
        device_hours=coll.cells["cost"].map(lambda c: (c.get("total") or {}).get("device_hours")
                                            if isinstance(c, dict) else None))
    files["cells"] = write_csv(out / "cells.csv", cells)
    files["plots"] = []
    if result.config.plots:
        _plots(result)
    result.report = render(result) + cost_section(result.collection.roots)
    files["report"] = write_text(out / "report.md", result.report)


def _plots(result: AnalysisResult) -> None:
    """Each plot is optional: a failure becomes a note in the report, never a crash."""
    plot_dir, files, settings = result.out_dir / "plots", result.files, result.config.settings

    def attempt(name, make):
        try:
            outcome = make()
        except Exception as error:  # noqa: BLE001
            log.warning("plot %s failed: %s", name, error)
            result.plot_notes.append(f"{name}: plot failed ({type(error).__name__}: {error})")
            return
        path, note = outcome if isinstance(outcome, tuple) else (outcome, None)
        if path is not None:
            files["plots"].append(path)
        if note:
            result.plot_notes.append(note)

    attempt("categories", lambda: plots.category_bars(result.table, result.labels, plot_dir / "categories.png"))
    attempt("differences", lambda: plots.baseline_differences(result.table, result.stats, result.labels,
                                                               tuple(result.config.baseline),
                                                               plot_dir / "differences.png"))
    if len(result.means):
        attempt("cd all tasks", lambda: plots.cd_diagram(result.means, result.labels, None,
                                                         plot_dir / "cd_all_tasks.png", settings,
                                                         result.config.cd_min_tasks))
        for category in ordered_categories(set(result.means["category"])):
            attempt(f"cd {category}", lambda c=category: plots.cd_diagram(
                result.means, result.labels, c, plot_dir / f"cd_{c}.png", settings, result.config.cd_min_tasks))
    unreadable = []
    norms = plots.layer_weight_norms(result.collection.cells[result.collection.cells["status"] == "done"],
                                     unreadable)
    result.problems += [Problem("unreadable", path, f"{reason}; no layer-weight plot for this cell")
                        for path, reason in unreadable]
    if len(norms):
        files["layer_weights"] = write_csv(result.out_dir / "layer_weights.csv",
                                           norms.assign(design=norms["design"].map(lambda d: result.labels[d])))
        attempt("layer weights", lambda: plots.layer_weight_heatmap(norms, result.labels,
                                                                    plot_dir / "layer_weights.png"))
