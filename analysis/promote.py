"""Promotion between two stages of a sweep: which stage-1 designs go on to stage 2, and how well the stages agree.

    python -m analysis promote select STAGE1_DIR --keep not_worse|top:K [--alpha 0.05] --out promotion.json
    python -m analysis promote report ROOT        # ROOT/stage1, ROOT/stage2, ROOT/promotion.json → promotion.md

Rule ``not_worse``: the design with the highest mean over out-of-domain tasks (seed-averaged) is the best; every
other design is promoted unless it is significantly worse than the best over all out-of-domain tasks pooled: by
the seed-aware test (crossed tasks × seeds bootstrap) where both designs have ≥ 2 seeds and ≥ 6 shared tasks, else
by the Wilcoxon signed-rank test over seed-averaged tasks. Rule ``top:K``: the K best by that mean. Agreement:
Kendall's τ between the two stages' means of the designs that ran both, over the tasks both stages share, with a
95% percentile interval from resampling those tasks (2,000 resamples).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from analysis.collect import collect
from analysis.designs import Design
from analysis.errors import OptionError
from analysis.seeds import MIN_TASKS, seed_bootstrap
from analysis.stats import WilcoxonSettings, paired_wilcoxon
from analysis.tables import imputed_seed_scores, label_domains, task_means
from cellfiles.atomic import write_text
from cellfiles.layout import SCORES_FILE

DECISION_FILE, REPORT_FILE = "promotion.json", "promotion.md"


def _out_of_domain(path: Path) -> pd.DataFrame:
    scores = label_domains(collect([path]).scores)
    if scores.empty:
        raise OptionError(f"{path}: no finished cell with scores")
    return scores[~scores["in_domain"]]


def parse_keep(text: str) -> tuple[str, int | None]:
    if text == "not_worse":
        return "not_worse", None
    if text.startswith("top:") and text[4:].isdigit() and int(text[4:]) >= 1:
        return "top", int(text[4:])
    raise OptionError(f"keep must be 'not_worse' or 'top:K' (K ≥ 1), got '{text}'")


def select(stage1: str | Path, keep: str = "not_worse", alpha: float = 0.05) -> dict:
    rule, k = parse_keep(keep)
    scores = _out_of_domain(Path(stage1))
    means = task_means(scores)
    per_seed = imputed_seed_scores(scores)
    overall = means.groupby("design")["mean"].mean().sort_values(ascending=False)
    best = overall.index[0]
    rows = []
    for rank, (design, mean) in enumerate(overall.items(), start=1):
        row = {"model": design.model, "pooling": design.pooling, "attention": design.attention,
               "design": design.label(), "rank": rank, "mean": float(mean), "diff_vs_best": float(mean - overall[best]),
               "test": "", "p": math.nan}
        if design != best:
            row.update(_versus(per_seed, means, best, design))
        if rule == "top":
            row["promoted"] = rank <= k
            row["why"] = f"rank {rank} {'≤' if rank <= k else '>'} {k}"
        elif design == best:
            row["promoted"], row["why"] = True, "best mean"
        else:
            worse = bool(row["p"] < alpha and row["diff_vs_best"] < 0)
            row["promoted"] = not worse
            row["why"] = (f"{'significantly' if worse else 'not significantly'} worse than the best "
                          f"({row['test']} p = {row['p']:.3g}, α = {alpha:g})")
        row["p"] = None if math.isnan(row["p"]) else row["p"]
        rows.append(row)
    return {"stage1": str(stage1), "keep": keep, "alpha": alpha, "best": best.label(), "designs": rows,
            "promoted": [{k2: r[k2] for k2 in ("model", "pooling", "attention")} for r in rows if r["promoted"]]}


def _versus(per_seed: pd.DataFrame, means: pd.DataFrame, best: Design, design: Design) -> dict:
    def matrix(d):
        return per_seed[per_seed["design"] == d].pivot_table(index="task", columns="seed", values="score")

    a, b = matrix(best), matrix(design)
    tasks = a.index.intersection(b.index)
    a, b = a.loc[tasks].dropna(axis=1), b.loc[tasks].dropna(axis=1)
    if len(tasks) >= MIN_TASKS and min(a.shape[1], b.shape[1]) >= 2:
        return {"test": "seed-aware", "p": seed_bootstrap(a.to_numpy(), b.to_numpy()).p}
    x = means[means["design"] == best].set_index("task")["mean"].reindex(tasks)
    y = means[means["design"] == design].set_index("task")["mean"].reindex(tasks)
    return {"test": "Wilcoxon", "p": float(paired_wilcoxon(y.to_numpy(), x.to_numpy(), WilcoxonSettings()).p)}


def agreement(stage1: str | Path, stage2: str | Path, resamples: int = 2000, seed: int = 0) -> dict:
    """Kendall τ of the design means of both stages (designs and tasks both stages have) with a task-bootstrap
    interval; τ is None with fewer than 2 designs."""
    m1, m2 = task_means(_out_of_domain(Path(stage1))), task_means(_out_of_domain(Path(stage2)))
    designs = sorted(set(m1["design"]) & set(m2["design"]))
    tasks = sorted(set(m1["task"]) & set(m2["task"]))
    w1 = m1.pivot_table(index="task", columns="design", values="mean").reindex(index=tasks, columns=designs)
    w2 = m2.pivot_table(index="task", columns="design", values="mean").reindex(index=tasks, columns=designs)
    out = {"designs": [d.label() for d in designs], "tasks": len(tasks),
           "stage1_means": [float(v) for v in w1.mean()], "stage2_means": [float(v) for v in w2.mean()],
           "tau": None, "tau_ci": None}
    if len(designs) < 2 or not tasks:
        return out
    tau = _tau(w1.mean().to_numpy(), w2.mean().to_numpy())
    rng = np.random.default_rng(seed)
    x1, x2 = w1.to_numpy(), w2.to_numpy()
    boot = []
    for _ in range(resamples):
        pick = rng.integers(0, len(tasks), len(tasks))
        boot.append(_tau(np.nanmean(x1[pick], axis=0), np.nanmean(x2[pick], axis=0)))
    boot = np.array([b for b in boot if np.isfinite(b)])
    out["tau"] = tau
    out["tau_ci"] = [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))] if boot.size else None
    return out


def _tau(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) == 2:     # scipy needs no special case, but a tie gives NaN: say 0
        return float(np.sign(a[1] - a[0]) * np.sign(b[1] - b[0]))
    value = kendalltau(a, b).statistic
    return float(value) if np.isfinite(value) else 0.0


def report(root: str | Path) -> str:
    root = Path(root)
    decision = json.loads((root / DECISION_FILE).read_text())
    lines = [f"# Promotion: `{root}`", "",
             f"Stage 1 (`{root / 'stage1'}`): every design; rule `{decision['keep']}` (α = {decision['alpha']:g}); "
             f"best: {decision['best']}. Stage 2 (`{root / 'stage2'}`): the promoted designs, their trained models "
             f"reused where only evaluation differs.", "",
             "| design | stage-1 mean | Δ vs best | test | p | promoted | why |", "|---|---|---|---|---|---|---|"]
    for r in decision["designs"]:
        p = r["p"]
        lines.append(f"| {r['design']} | {r['mean']:.4f} | {r['diff_vs_best']:+.4f} | {r['test'] or '—'} | "
                     f"{'—' if p is None or (isinstance(p, float) and math.isnan(p)) else f'{p:.3g}'} | "
                     f"{'yes' if r['promoted'] else 'no'} | {r['why']} |")
    stage2 = root / "stage2"
    if stage2.is_dir() and any(stage2.rglob(SCORES_FILE)):
        agree = agreement(root / "stage1", stage2)
        lines += ["", "| design (ran both stages) | stage-1 mean | stage-2 mean |", "|---|---|---|"]
        lines += [f"| {d} | {a:.4f} | {b:.4f} |" for d, a, b in zip(agree["designs"], agree["stage1_means"],
                                                                    agree["stage2_means"])]
        if agree["tau"] is None:
            lines += ["", f"Kendall τ: not defined ({len(agree['designs'])} design(s) ran both stages)."]
        else:
            ci = agree["tau_ci"]
            lines += ["", f"Kendall τ between the stages' design means over the {agree['tasks']} shared task(s): "
                          f"{agree['tau']:+.3f}" + (f" (95% task-bootstrap interval [{ci[0]:+.3f}, {ci[1]:+.3f}])"
                                                    if ci else "") + "."]
    else:
        lines += ["", "Stage 2 has no finished cell yet."]
    text = "\n".join(lines) + "\n"
    write_text(root / REPORT_FILE, text)
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis promote", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("select")
    s.add_argument("stage1")
    s.add_argument("--keep", default="not_worse")
    s.add_argument("--alpha", type=float, default=0.05)
    s.add_argument("--out", required=True)
    r = sub.add_parser("report")
    r.add_argument("root")
    args = p.parse_args(argv)
    try:
        if args.command == "select":
            decision = select(args.stage1, args.keep, args.alpha)
            write_text(args.out, json.dumps(decision, indent=2) + "\n")
            print(f"promoted {len(decision['promoted'])} of {len(decision['designs'])} design(s): "
                  + ", ".join(r["design"] for r in decision["designs"] if r["promoted"]))
        else:
            print(report(args.root), end="")
    except (OptionError, FileNotFoundError) as error:
        print(f"analysis promote: error: {error}", file=sys.stderr)
        return 2
    return 0
