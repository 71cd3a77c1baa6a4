"""Did a code change move the scores? Two sweeps of the same cells (same configs, so the same cell names), run by
the code before and after a change, compared per out-of-domain category and pooled over tasks.

For each category: the mean difference (after - before) of seed-averaged main scores, the seed-aware crossed
bootstrap over tasks x seeds (``analysis.seeds.seed_bootstrap``, the analysis package's test), and the Wilcoxon
signed-rank test over tasks on seed means (``scipy.stats.wilcoxon``). Holm over the categories
(``statsmodels``). A change that only reorders float sums or redraws dropout masks from the same distribution
should show differences inside seed noise. The final training loss of each seed is listed too.

    python benchmarks/code_change_quality.py multirun/default_twins multirun/default_lean \
        --out benchmarks/results/code_change_quality.json

Only cells present, finished, in both sweeps count; each is matched by name, and they must be the seeds of one
design.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.report import RESULTS, save, table  # noqa: E402


def finished_cells(sweep: Path) -> dict[str, tuple[Path, dict]]:
    """{cell name: (directory, cell.json record)} of the sweep's finished cells."""
    from analysis.contract import cell_record

    cells = {}
    for path in sorted(p for p in sweep.iterdir() if (p / "cell.json").exists()):
        record, _ = cell_record(path / "cell.json")
        if record and record.get("status") == "done":
            cells[path.name] = (path, record)
    return cells


def design_identity(record: dict) -> dict:
    """The cell's identity (embedgrid.grid.cellid.identity: what its name hashes) without the seed."""
    from omegaconf import OmegaConf

    from embedgrid.grid.cellid import identity

    return {k: v for k, v in identity(OmegaConf.create(record["config"])).items() if k != "seed"}


def out_of_domain_scores(cell: Path) -> dict[str, tuple[str, float]]:
    """{task: (category, main score)} of the cell's out-of-domain tasks."""
    from analysis.contract import task_scores

    rows, _ = task_scores(cell / "scores.json")
    return {r["task"]: (r["category"], float(r["score"])) for r in rows if not r["in_domain"]}


def compare(before: Path, after: Path, resamples: int = 10_000) -> dict:
    import numpy as np
    from scipy.stats import wilcoxon
    from statsmodels.stats.multitest import multipletests

    from analysis.seeds import seed_bootstrap

    old, new = finished_cells(before), finished_cells(after)
    names = sorted(set(old) & set(new))
    if len(names) < 2:
        raise SystemExit(f"need at least 2 cells finished in both sweeps, found {len(names)}: {names}")
    designs = {json.dumps(design_identity(old[n][1]), sort_keys=True, default=str) for n in names}
    if len(designs) != 1:  # the cells are the seeds of one design; several designs would mix as seeds
        raise SystemExit(f"the cells in both sweeps span {len(designs)} designs; compare one design at a time")
    sides = (("before", old), ("after", new))
    scores = {side: [out_of_domain_scores(cells[n][0]) for n in names] for side, cells in sides}
    tasks = sorted(set.intersection(*(set(s) for side in scores.values() for s in side)))
    category = {t: scores["before"][0][t][0] for t in tasks}
    matrix = {side: np.array([[s[t][1] for s in rows] for t in tasks]) for side, rows in scores.items()}
    groups = {c: [i for i, t in enumerate(tasks) if category[t] == c] for c in sorted(set(category.values()))}
    groups["all out-of-domain tasks (pooled)"] = list(range(len(tasks)))
    results = {}
    for name, index in groups.items():
        ref, cand = matrix["before"][index], matrix["after"][index]
        boot = seed_bootstrap(ref, cand, resamples=resamples)
        diff = cand.mean(1) - ref.mean(1)
        wil = wilcoxon(diff.round(4), zero_method="wilcox") if np.any(diff.round(4) != 0) else None
        results[name] = {"tasks": len(index), "mean_before": float(ref.mean()), "mean_after": float(cand.mean()),
                         "mean_diff": boot.mean_diff, "ci": [boot.ci_low, boot.ci_high], "seed_aware_p": boot.p,
                         "wilcoxon_p": float(wil.pvalue) if wil is not None else 1.0}
    family = [c for c in groups if not c.startswith("all ")]
    holm = multipletests([results[c]["seed_aware_p"] for c in family], method="holm")[1]
    for c, p in zip(family, holm):
        results[c]["seed_aware_p_holm"] = float(p)
    losses = {side: [cells[n][1]["train"]["final_loss"] for n in names] for side, cells in sides}
    return {"before": str(before), "after": str(after), "cells": names, "categories": results, "final_loss": losses}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--out", type=Path, default=RESULTS / "code_change_quality.json")
    args = parser.parse_args(argv)
    result = compare(args.before, args.after)
    print(f"{len(result['cells'])} cells in both {args.before} and {args.after}")
    table(("category", "tasks", "before", "after", "after - before [95% CI]", "seed-aware p (Holm)", "Wilcoxon p"),
          ((name, r["tasks"], f"{r['mean_before']:.4f}", f"{r['mean_after']:.4f}",
            f"{r['mean_diff']:+.4f} [{r['ci'][0]:+.4f}, {r['ci'][1]:+.4f}]",
            f"{r['seed_aware_p']:.3f}" + (f" ({r['seed_aware_p_holm']:.3f})" if "seed_aware_p_holm" in r else ""),
            f"{r['wilcoxon_p']:.3f}") for name, r in result["categories"].items()))
    print("final training loss per seed:", {k: [round(v, 4) for v in vs] for k, vs in result["final_loss"].items()})
    save(result, args.out, "code_change_quality.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
