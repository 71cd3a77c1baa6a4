"""python -m analysis plan [PILOT] --effect 0.01 ...: power plan of a Holm family and cost plan of a grid.

PILOT is a sweep directory (its finished cells) or a report directory (its scores_long.csv). Without one, the
power plan uses the documented prior. The cost plan needs finished cells of the same model and recipe with their
records (--cost-from, default the pilot when it is a sweep directory).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from analysis.cost_plan import CostPlan, cost_plan, cost_table, launch_overheads, load_records, write_cost
from analysis.designs import Design
from analysis.errors import OptionError
from analysis.plan import (PAPER_DESIGNS, PRIOR_CATEGORIES, PRIOR_SEEDS, PRIOR_TASKS, check_range, grid_designs,
                           load_pilot, parse_grid, pilot_tests, plan_table, power_plan, prior_tests, summary,
                           write_plan)
from analysis.power_plan import SIMULATIONS
from analysis.stats import ALTERNATIVES
from cellfiles.atomic import write_text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis plan", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("pilot", nargs="?", default=None, help="pilot sweep directory or report directory")
    p.add_argument("--effect", default=None,
                   help="score difference to detect on every test (e.g. 0.01), or 'observed' (each test's pilot "
                        "difference; the default with a pilot)")
    p.add_argument("--family", default="paper", help="comparison presets forming the Holm family")
    p.add_argument("--baseline", default="eos_last,causal", help="POOLING,ATTENTION of the baseline design")
    p.add_argument("--by", default="", help="extra config keys that split designs (sweep-directory pilots)")
    p.add_argument("--twin", default=None, metavar="KEY=VALUE", help="twin setting for the twins preset")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--power", type=float, default=0.8)
    p.add_argument("--alternative", choices=ALTERNATIVES, default="two-sided")
    p.add_argument("--max-seeds", type=int, default=20, help="most seeds per design worth considering")
    p.add_argument("--max-tasks", type=int, default=100, help="most tasks per category the suite can have")
    p.add_argument("--sims", type=int, default=SIMULATIONS, help="simulated studies per grid point")
    p.add_argument("--grid", nargs="*", default=[], metavar="KEY=V1,V2",
                   help="designs to plan (pooling=..., attention=..., model=...); default: the pilot's designs, "
                        "or the paper's five without a pilot")
    p.add_argument("--seeds", type=int, default=None, help="seeds per design of the planned grid (cost plan; "
                                                           f"prior power plan: default {PRIOR_SEEDS})")
    p.add_argument("--tasks", type=int, default=PRIOR_TASKS, help="tasks per category (prior power plan)")
    p.add_argument("--categories", type=int, default=PRIOR_CATEGORIES, help="categories (prior power plan)")
    p.add_argument("--cost-from", nargs="*", default=None, metavar="SWEEP_DIR",
                   help="sweeps whose finished cells' records price the grid (default: the pilot sweep)")
    p.add_argument("--parallel", type=int, default=1,
                   help="cells running at once (1: the local launcher; N: a SLURM array of N jobs)")
    p.add_argument("--no-power", action="store_true", help="cost plan only")
    p.add_argument("--out", default=None, help="output directory (default: <pilot>/plan, or ./plan_out)")
    return p


def _split(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return _run(args)
    except (OptionError, FileNotFoundError, ValueError) as error:
        print(f"analysis plan: error: {error}", file=sys.stderr)
        return 2


def _run(args) -> int:
    check_range("alpha", args.alpha, 0, 1)
    check_range("power", args.power, 0, 1)
    for name in ("max_seeds", "max_tasks", "sims", "parallel"):
        if getattr(args, name) < 1:
            raise OptionError(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(args, name)}")
    baseline = _split(args.baseline)
    if len(baseline) != 2:
        raise OptionError(f"--baseline must be POOLING,ATTENTION, got '{args.baseline}'")
    twin = tuple(args.twin.split("=", 1)) if args.twin else None
    family = _split(args.family)
    grid = parse_grid(args.grid)
    out = Path(args.out) if args.out else (Path(args.pilot) / "plan" if args.pilot else Path("plan_out"))
    scores = None
    if args.pilot:
        scores, source = load_pilot(args.pilot, by=_split(args.by))
    if not args.no_power:
        effect = _effect(args.effect, scores is not None)
        if scores is not None:
            skipped: list[str] = []
            tests = pilot_tests(scores, family, baseline, twin, skipped)
            if skipped:
                print(f"not planned (fewer than 2 tasks: no task variation to estimate): {'; '.join(skipped)}")
        else:
            designs = grid_designs(grid) if grid else [Design("model", p, a) for p, a in PAPER_DESIGNS]
            tests = prior_tests(designs, family, args.categories, args.tasks, args.seeds or PRIOR_SEEDS, baseline)
            source = (f"the prior (sd interaction/run/noise from the committed paper-grid report), {args.categories}"
                      f" categories × {args.tasks} tasks, {args.seeds or PRIOR_SEEDS} seeds")
        result = power_plan(tests, effect, args.alpha, args.power, args.alternative, args.max_seeds,
                            args.max_tasks, args.sims)
        with pd.option_context("display.width", 250, "display.max_colwidth", 90, "display.max_rows", 500):
            text = plan_table(result).to_string(index=False) + "\n\n" + summary(result, source, effect) + "\n"
        print(text, end="")
        files = write_plan(result, out, source, effect)
        files["txt"] = write_text(out / "power_plan.txt", text)
        print(f"power plan: {files['txt']}, {files['json']} and {files['csv']}")
    sources = args.cost_from if args.cost_from is not None else (
        [args.pilot] if args.pilot and not (Path(args.pilot) / "scores_long.csv").is_file() else [])
    if sources:
        records = load_records(sources)
        designs = grid_designs(grid) if grid else sorted({r.design for r in records})
        seeds = args.seeds or max(1, len({r.seed for r in records}))
        costs: CostPlan = cost_plan(records, designs, seeds, args.parallel, launch_overheads(sources))
        print()
        print(cost_table(costs))
        files = write_cost(costs, out)
        print(f"cost plan: {files['json']} (written into a sweep directory before it runs, its report shows "
              f"estimate and actual side by side)")
    elif args.no_power or grid:
        print("cost plan: no finished cells to price the grid from (give --cost-from SWEEP_DIR)")
    return 0


def _effect(text: str | None, have_pilot: bool) -> float | None:
    if text is None or text == "observed":
        if not have_pilot:
            raise OptionError("--effect is needed without a pilot (a score difference, e.g. --effect 0.01)")
        return None
    try:
        value = float(text)
    except ValueError:
        raise OptionError(f"--effect must be a number (score units, e.g. 0.01) or 'observed', got '{text}'") from None
    if not math.isfinite(value) or value == 0:
        raise OptionError(f"--effect must be a finite non-zero score difference, got {text}")
    return value
