"""python -m analysis plan: the power plan of a family (from a pilot or a prior) and the cost plan of a grid."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.collect import collect
from analysis.designs import DEFAULT_BASELINE, PRESETS, Design, PairContext, resolve_presets
from analysis.errors import OptionError
from analysis.long_scores import LONG_FILE, designs_of, read_long
from analysis.power_plan import Components, Plan, estimate, plan
from analysis.tables import imputed_seed_scores, is_in_domain, label_domains, ordered_categories
from cellfiles.atomic import write_csv, write_text
from cellfiles.designs import PAPER_TABLE

# The prior used without a pilot: medians over the 36 family tests of the 3-seed offline paper grid
# (docs/reports/paper_grid_smollm2), SmolLM2-135M, 6-7 tasks per category. Standard deviations in score units;
# tests/analysis/test_plan.py re-derives them from that report's scores_long.csv.
PRIOR_SD_INTERACTION = 0.0423     # task × design interaction of a pair's difference
PRIOR_SD_RUN = 0.0038             # one training run's shift shared by a category's tasks, per design
PRIOR_SD_NOISE = 0.0220           # run × task residual, per design
PRIOR_TASKS, PRIOR_SEEDS, PRIOR_CATEGORIES = 6, 3, 6
PAPER_DESIGNS = [(d.pooling, d.attention) for d in PAPER_TABLE]


@dataclass
class PilotTest:
    reference: Design
    candidate: Design
    category: str
    tasks: int
    seeds: int
    components: Components

    @property
    def name(self) -> str:
        return f"{self.candidate.label(False)} vs {self.reference.label(False)}: {self.category}"


def load_pilot(path: str | Path, by: tuple[str, ...] = ()) -> tuple[pd.DataFrame, str]:
    """Per-task, per-seed scores of a pilot (columns design [Design], seed, task, category, in_domain, score) and
    where they came from: a report directory's scores_long.csv, or the cells of a sweep directory."""
    path = Path(path)
    if (path / LONG_FILE).is_file():
        frame = read_long(path / LONG_FILE)
        frame = frame.assign(design=designs_of(frame))
        return frame, f"{path / LONG_FILE}"
    if not path.is_dir():
        raise OptionError(f"pilot {path} is neither a report directory (with {LONG_FILE}) nor a sweep directory")
    collection = collect([path], by=by)
    if collection.scores.empty:
        raise OptionError(f"pilot {path}: no finished cell with scores found (run the pilot first, or plan from "
                          f"the prior by leaving PILOT out)")
    return collection.scores, f"cells of {path}"


def family_pairs(designs: list[Design], presets: tuple[str, ...], baseline=DEFAULT_BASELINE, twin=None):
    context = PairContext(tuple(baseline), twin)
    pairs = []
    for preset in resolve_presets(presets):
        pairs += [p for p in PRESETS[preset][1](designs, context) if p[0] in designs and p[1] in designs]
    return list(dict.fromkeys(pairs))


def pilot_tests(scores: pd.DataFrame, presets: tuple[str, ...], baseline=DEFAULT_BASELINE, twin=None,
                skipped: list[str] | None = None) -> list[PilotTest]:
    """The family's tests (pair × out-of-domain category) with their components estimated from the pilot; a
    category with fewer than 2 shared tasks cannot show task variation and is left out (named in ``skipped``)."""
    per_seed = imputed_seed_scores(label_domains(scores))
    designs = sorted(set(per_seed["design"]))
    tests = []
    categories = [c for c in ordered_categories(set(per_seed["category"])) if not is_in_domain(c)]
    matrices = {key: g.pivot_table(index="task", columns="seed", values="score")
                for key, g in per_seed.groupby(["design", "category"])}
    for reference, candidate in family_pairs(designs, presets, baseline, twin):
        for category in categories:
            a, b = matrices.get((reference, category)), matrices.get((candidate, category))
            if a is None or b is None:
                continue
            tasks = a.index.intersection(b.index)
            a, b = a.loc[tasks].dropna(axis=1), b.loc[tasks].dropna(axis=1)
            if len(tasks) < 2:
                if skipped is not None:
                    skipped.append(f"{candidate.label(False)} vs {reference.label(False)}: {category} "
                                   f"({len(tasks)} shared task)")
                continue
            if min(a.shape[1], b.shape[1]) < 2:
                raise OptionError(f"pilot: {candidate.label()} vs {reference.label()} on {category} has "
                                  f"{a.shape[1]}/{b.shape[1]} seed(s); a pilot needs ≥ 2 seeds per design to "
                                  f"separate seed noise from task variation (or plan from the prior: leave PILOT out)")
            tests.append(PilotTest(reference, candidate, category, len(tasks), min(a.shape[1], b.shape[1]),
                                   estimate(a.to_numpy(), b.to_numpy())))
    return tests


def prior_tests(designs: list[Design], presets: tuple[str, ...], categories: int = PRIOR_CATEGORIES,
                tasks: int = PRIOR_TASKS, seeds: int = PRIOR_SEEDS, baseline=DEFAULT_BASELINE) -> list[PilotTest]:
    comp = Components(0.0, PRIOR_SD_INTERACTION ** 2, PRIOR_SD_RUN ** 2, PRIOR_SD_RUN ** 2, PRIOR_SD_NOISE ** 2,
                      PRIOR_SD_NOISE ** 2)
    return [PilotTest(r, c, f"category {k + 1}", tasks, seeds, comp)
            for r, c in family_pairs(designs, presets, baseline) for k in range(categories)]


def grid_designs(grid: dict[str, list[str]], model: str = "model") -> list[Design]:
    """Designs of a --grid (pooling=..., attention=...; other keys become extra factors)."""
    pools = grid.get("pooling") or ["eos_last"]
    attns = grid.get("attention") or ["causal"]
    extras = [k for k in grid if k not in ("pooling", "attention", "model")]
    models = grid.get("model") or [model]
    out = []
    for m, p, a, *rest in product(models, pools, attns, *[grid[k] for k in extras]):
        out.append(Design(m, p, a, tuple(zip(extras, rest))))
    return out


def power_plan(tests: list[PilotTest], effect: float | None, alpha: float, power: float, alternative: str,
               max_seeds: int, max_tasks: int, sims: int) -> Plan:
    """``effect`` None: each test's observed mean difference; else that size for every test."""
    if not tests:
        raise OptionError("the family has no test in this pilot (check --family and the pilot's designs)")
    named = {}
    for t in tests:
        c = t.components if effect is None else replace(t.components, effect=float(effect))
        named[t.name] = (c, t.tasks)
    seeds = min(t.seeds for t in tests)
    return plan(named, seeds, alpha, power, alternative, max_seeds, max_tasks, sims)


# ---- output ------------------------------------------------------------------------------------------------------

def _n(value: float, limit: int) -> str:
    return str(int(value)) if math.isfinite(value) else f"> {limit}"


def plan_table(result: Plan) -> pd.DataFrame:
    rows = []
    for t in result.tests:
        r = t.row()
        rows.append({"test": t.name, "Δ": f"{r['effect']:+.4f}", "sd int/run/noise":
                     f"{r['sd_interaction']:.3f}/{max(r['sd_run_ref'], r['sd_run_cand']):.3f}/"
                     f"{max(r['sd_noise_ref'], r['sd_noise_cand']):.3f}",
                     "tasks": t.pilot_tasks, "Wilcoxon Holm floor": f"{t.wilcoxon_floor_at_pilot:.3g}",
                     "power now": f"{t.power_at_pilot:.2f}",
                     "seeds needed (pilot tasks)": _n(t.seeds_needed, result.max_seeds),
                     "normal": _n(t.seeds_normal, 10 ** 4),
                     f"tasks needed ({t.pilot_seeds} seeds)": _n(t.tasks_needed, result.max_tasks),
                     "normal ": _n(t.tasks_normal, 10 ** 4),
                     "reachable": "yes" if t.reachable else f"no (≤ {result.max_seeds} seeds × {result.max_tasks} tasks)"})
    return pd.DataFrame(rows)


def summary(result: Plan, source: str, effect: float | None) -> str:
    m, tests = result.m, result.tests
    wilcoxon_ok = sum(t.wilcoxon_floor_at_pilot < result.alpha for t in tests)
    powered = sum(t.power_at_pilot >= result.power for t in tests)
    reachable = [t for t in tests if t.reachable]
    size = "the observed effect of each test" if effect is None else f"an effect of {effect:g} on every test"
    lines = [
        f"Power plan from {source}: Holm family of m = {m} test(s), α = {result.alpha:g}, power {result.power:g}, "
        f"{size}; seed-aware test simulated {result.sims} times per grid.",
        f"At the pilot's grid ({result.pilot_seeds} seeds, {min(t.pilot_tasks for t in tests)}–"
        f"{max(t.pilot_tasks for t in tests)} tasks per category): {wilcoxon_ok} of {m} Wilcoxon tests can reach "
        f"Holm p < {result.alpha:g} at all (smallest p 2/2^n); {powered} of {m} seed-aware tests have power ≥ "
        f"{result.power:g}.",
        f"The Wilcoxon family can reach α only with ≥ {result.wilcoxon_min_tasks} tasks in every category.",
        f"{len(reachable)} of {m} test(s) reachable within {result.max_seeds} seeds × {result.max_tasks} tasks per "
        f"category.",
    ]
    if result.smallest:
        s, t = result.smallest
        lines.append(f"Smallest grid powering every reachable test: {s} seeds per design, ≥ {int(t)} tasks per "
                     f"category" + (f" (Wilcoxon floor: ≥ {result.wilcoxon_min_tasks})"
                                    if t < result.wilcoxon_min_tasks else "") + ".")
    feasible = [(s, int(t)) for s, t in result.frontier if math.isfinite(t)]
    if feasible:
        lines.append("Seeds → tasks per category needed by every reachable test: "
                     + ", ".join(f"{s} → {t}" for s, t in feasible) + ".")
    return "\n".join(lines)


def write_plan(result: Plan, out_dir: Path, source: str, effect: float | None, extra: dict | None = None) -> dict:
    out_dir = Path(out_dir)
    rows = pd.DataFrame([t.row() for t in result.tests])
    files = {"csv": write_csv(out_dir / "power_plan.csv", rows)}

    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    payload = {"source": source, "effect": effect if effect is not None else "observed", "alpha": result.alpha,
               "power": result.power, "alternative": result.alternative, "m": result.m, "sims": result.sims,
               "pilot_seeds": result.pilot_seeds, "max_seeds": result.max_seeds, "max_tasks": result.max_tasks,
               "wilcoxon_min_tasks": result.wilcoxon_min_tasks,
               "smallest_grid": ({"seeds": result.smallest[0], "tasks_per_category": result.smallest[1]}
                                 if result.smallest else None),
               "frontier": [{"seeds": s, "tasks_per_category": t} for s, t in result.frontier],
               "tests": rows.to_dict(orient="records"), **(extra or {})}
    files["json"] = write_text(out_dir / "power_plan.json", json.dumps(clean(payload), indent=2) + "\n")
    return files


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    grid = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise OptionError(f"--grid takes KEY=V1,V2 items (e.g. pooling=mean,eos_last), got '{item}'")
        grid[key.strip()] = [v.strip() for v in values.split(",") if v.strip()]
    return grid


def check_range(name: str, value: float, low: float, high: float) -> None:
    if not (low < value < high) or not np.isfinite(value):
        raise OptionError(f"--{name} must be in ({low:g}, {high:g}), got {value}")
