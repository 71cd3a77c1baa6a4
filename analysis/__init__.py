"""Analysis of embedgrid sweeps from cell directories only (cell.json + scores.json): per-category tables,
paired Wilcoxon signed-rank tests across datasets with Holm correction and effect sizes, plots, report.md.

    python -m analysis multirun/<grid> [more sweep dirs]

    from analysis import analyze
    result = analyze("multirun/paper", presets=["paper"])
    result.stats      # one row per (comparison, pair, category)
"""
from __future__ import annotations

from analysis.collect import Collection, Problem, collect
from analysis.designs import PRESETS, Design
from analysis.run import AnalysisConfig, AnalysisResult, analyze
from analysis.stats import WilcoxonSettings, holm, paired_wilcoxon, rank_biserial

__all__ = ["AnalysisConfig", "AnalysisResult", "Collection", "Design", "PRESETS", "Problem", "WilcoxonSettings",
           "analyze", "collect", "holm", "paired_wilcoxon", "rank_biserial"]
