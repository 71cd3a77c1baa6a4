"""Analysis of embedgrid sweeps from cell directories only (cell.json + scores.json): per-category tables
(out-of-domain first, in-domain apart), paired Wilcoxon signed-rank tests across datasets in one pre-registered
Holm family, a seed-aware bootstrap, minimum detectable effects, effect sizes, plots, report.md.

    python -m analysis multirun/<grid> [more sweep dirs]

    from analysis import analyze
    result = analyze("multirun/paper", presets=["paper"])
    result.stats             # one row per distinct (pair, category)
    print(result.category_table())   # design × category text table with task counts
"""
from __future__ import annotations

from analysis.collect import Collection, Problem, collect
from analysis.designs import PRESETS, Design
from analysis.power import minimum_detectable_effect
from analysis.report import category_text_table
from analysis.run import AnalysisConfig, AnalysisResult, analyze
from analysis.seeds import seed_bootstrap
from analysis.stats import WilcoxonSettings, holm, paired_wilcoxon, rank_biserial

__all__ = ["AnalysisConfig", "AnalysisResult", "Collection", "Design", "PRESETS", "Problem", "WilcoxonSettings",
           "analyze", "category_text_table", "collect", "holm", "minimum_detectable_effect", "paired_wilcoxon",
           "rank_biserial", "seed_bootstrap"]
