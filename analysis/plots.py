"""PNG plots: per-category bars with seed error bars, critical-difference diagrams, learned layer weights."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.designs import Design, display_order
from analysis.stats import WilcoxonSettings, holm, paired_wilcoxon
from analysis.tables import MEAN_CATEGORY, score_matrix, wide
from cellfiles.atomic import save_figure
from cellfiles.layout import MODEL_DIR

LAYER_WEIGHT_KEY = re.compile(r"(^|\.)layer_(weights|embedding)(\.weight)?$")
# the model wing owns the saved-encoder names (embedgrid/model/saved.py, never imported here); a test keeps them equal
POOLING_FILE = "pooling.safetensors"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def design_colors(labels: dict[Design, str]) -> dict[Design, str]:
    """One colour per design, the same in every plot (tab10 in display order, then tab20)."""
    import matplotlib

    palette = list(matplotlib.colormaps["tab10"].colors) + list(matplotlib.colormaps["tab20"].colors)
    return {d: matplotlib.colors.to_hex(palette[i % len(palette)])
            for i, d in enumerate(sorted(labels, key=display_order))}


def category_bars(table: pd.DataFrame, labels: dict[Design, str], path: Path) -> Path | None:
    """Grouped bars: categories (+ Mean (Task)) on x, one bar per design, error bars = std across seeds."""
    means, stds = wide(table, "mean"), wide(table, "std")
    if means.empty:
        return None
    means, stds = (frame.drop(columns=[MEAN_CATEGORY], errors="ignore") for frame in (means, stds))
    designs = sorted(means.index, key=display_order)
    plt = _pyplot()
    width, colors = 0.8 / max(len(designs), 1), design_colors(labels)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(means.columns) * (1 + 0.15 * len(designs))), 4.2))
    x = np.arange(len(means.columns))
    for i, design in enumerate(designs):
        ax.bar(x + (i - (len(designs) - 1) / 2) * width, means.loc[design].to_numpy(float), width,
               yerr=np.nan_to_num(stds.loc[design].to_numpy(float)), capsize=2, label=labels[design],
               color=colors[design])
    ax.set_xticks(x, list(means.columns), rotation=20, ha="right")
    ax.set_ylabel("main score (mean over tasks; error bar: std over seeds)")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("Scores by task category")
    try:
        return save_figure(path, fig)
    finally:
        plt.close(fig)


def cd_diagram(means: pd.DataFrame, labels: dict[Design, str], category: str | None, path: Path,
               settings: WilcoxonSettings = WilcoxonSettings(), min_tasks: int = 6) -> tuple[Path | None, str]:
    """Mean ranks (1 = best) + pairwise Wilcoxon p (Holm over all pairs) → scikit-posthocs CD diagram.

    Returns (path or None, a one-line note for the report)."""
    matrix = score_matrix(means, category)
    name = category or "all tasks"
    if matrix.shape[1] < 2:
        return None, f"{name}: CD diagram skipped (fewer than 2 designs with scores on shared tasks)"
    if matrix.shape[0] < min_tasks:
        return None, (f"{name}: CD diagram skipped ({matrix.shape[0]} shared task(s) < {min_tasks}, too few for a "
                      f"signed-rank test to reach p < {settings.alpha:g})")
    import scikit_posthocs as sp

    columns = sorted(matrix.columns, key=display_order)
    ranks = matrix[columns].rank(axis=1, ascending=False).mean(axis=0)
    pairs = [(a, b) for i, a in enumerate(columns) for b in columns[i + 1:]]
    p = [paired_wilcoxon(matrix[b].to_numpy(), matrix[a].to_numpy(), settings).p for a, b in pairs]
    _, adjusted = holm(p, settings.alpha)
    sig = pd.DataFrame(1.0, index=[labels[c] for c in columns], columns=[labels[c] for c in columns])
    for (a, b), q in zip(pairs, adjusted):
        sig.loc[labels[a], labels[b]] = sig.loc[labels[b], labels[a]] = 1.0 if np.isnan(q) else q
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.35 * len(columns)))
    colors = design_colors(labels)
    sp.critical_difference_diagram(ranks.rename(index=labels), sig, alpha=settings.alpha, ax=ax,
                                   color_palette={labels[c]: colors[c] for c in columns})
    ax.set_title(f"{name}: mean rank over {matrix.shape[0]} tasks (bars: no significant difference, Holm over "
                 "this diagram's pairs: a descriptive view, not the pre-registered family)",
                 fontsize=9)
    try:
        return save_figure(path, fig), f"{name}: CD diagram over {matrix.shape[0]} tasks"
    finally:
        plt.close(fig)


def layer_weight_norms(cells: pd.DataFrame, unreadable: list | None = None) -> pd.DataFrame:
    """Per cell with a learned layer-weight matrix (num_layers, hidden) in model/pooling.safetensors: the L2 norm
    of each layer's row. Long: cell, design, seed, layer (1-based), l2_norm. Damaged files are skipped and, if
    ``unreadable`` is a list, appended to it as (path, reason)."""
    from safetensors.numpy import load_file

    rows = []
    for _, cell in cells.iterrows():
        path = Path(cell["path"]) / MODEL_DIR / POOLING_FILE
        if not path.exists():
            continue
        try:
            tensors = load_file(str(path))
        except Exception as error:  # noqa: BLE001 - a damaged file must not stop the report
            if unreadable is not None:
                unreadable.append((str(path), f"{type(error).__name__}: {error}"))
            continue
        for key, value in tensors.items():
            if LAYER_WEIGHT_KEY.search(key) and value.ndim == 2:
                norms = np.linalg.norm(value.astype(np.float64), axis=1)
                rows += [{"cell": cell["cell"], "design": cell["design"], "seed": cell["seed"], "layer": i + 1,
                          "l2_norm": float(n)} for i, n in enumerate(norms)]
                break
    return pd.DataFrame(rows, columns=["cell", "design", "seed", "layer", "l2_norm"])


def layer_weight_heatmap(norms: pd.DataFrame, labels: dict[Design, str], path: Path) -> Path | None:
    """Rows = cells, columns = layers; one panel per model (layer counts differ)."""
    if norms.empty:
        return None
    plt = _pyplot()
    models = sorted({d.model for d in norms["design"]})
    fig, axes = plt.subplots(len(models), 1, squeeze=False,
                             figsize=(8, sum(1 + 0.3 * norms[norms["design"].map(lambda d: d.model) == m]["cell"]
                                             .nunique() for m in models)))
    for ax, model in zip(axes[:, 0], models):
        part = norms[norms["design"].map(lambda d: d.model) == model]
        grid = part.pivot(index="cell", columns="layer", values="l2_norm")
        order = sorted(grid.index, key=lambda c: (display_order(part.loc[part["cell"] == c, "design"].iloc[0]), c))
        grid = grid.loc[order]
        names = [f"{labels[part.loc[part['cell'] == c, 'design'].iloc[0]]} seed "
                 f"{part.loc[part['cell'] == c, 'seed'].iloc[0]}" for c in grid.index]
        image = ax.imshow(grid.to_numpy(float), aspect="auto", cmap="viridis")
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_xticks(range(grid.shape[1]), [str(c) for c in grid.columns], fontsize=7)
        ax.set_xlabel("layer")
        ax.set_title(f"{model}: L2 norm of the learned per-layer weight vector", fontsize=9)
        fig.colorbar(image, ax=ax)
    try:
        return save_figure(path, fig)
    finally:
        plt.close(fig)


def baseline_differences(table: pd.DataFrame, stats: pd.DataFrame, labels: dict[Design, str],
                         baseline: tuple[str, str], path: Path) -> Path | None:
    """Design − baseline per category (+ Mean (Task)), marked * (p < α) and † (Holm) from the vs_baseline tests."""
    from analysis.report import HOLM_MARK, RAW_MARK, baseline_rows

    means = wide(table, "mean")
    if means.empty:
        return None
    means = means.drop(columns=[MEAN_CATEGORY], errors="ignore")
    pairs = [(d, Design(d.model, baseline[0], baseline[1], d.extra)) for d in sorted(means.index, key=display_order)]
    pairs = [(d, b) for d, b in pairs if d != b and b in means.index]
    if not pairs:
        return None
    tests = baseline_rows(stats, tuple(baseline))
    plt = _pyplot()
    width, colors = 0.8 / len(pairs), design_colors(labels)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(means.columns) * (1 + 0.15 * len(pairs))), 4.2))
    x = np.arange(len(means.columns))
    for i, (design, reference) in enumerate(pairs):
        delta = (means.loc[design] - means.loc[reference]).to_numpy(float)
        offset = x + (i - (len(pairs) - 1) / 2) * width
        ax.bar(offset, delta, width, label=labels[design], color=colors[design])
        for xi, column, value in zip(offset, means.columns, delta):
            test = tests.get((design, column))
            mark = "" if test is None else (RAW_MARK if test["significant_raw"] else "") + \
                (HOLM_MARK if test["reject_holm"] else "")
            if mark and np.isfinite(value):
                ax.annotate(mark, (xi, value), ha="center", va="bottom" if value >= 0 else "top", fontsize=8)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(x, list(means.columns), rotation=20, ha="right")
    ax.set_ylabel(f"design − {baseline[0]} + {baseline[1]}")
    ax.set_title(f"Difference from the baseline ({RAW_MARK} p < α, {HOLM_MARK} Holm-adjusted p < α)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    try:
        return save_figure(path, fig)
    finally:
        plt.close(fig)
