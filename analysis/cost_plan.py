"""Cost plan: a grid's device-hours and wall time per phase, priced from finished cells of the same model and recipe.

A cell's cost comes from its cell.json: the ``cost`` record (phases build/train/save/evaluate, each with wall_s and
device_hours) where the cell wrote one; otherwise its timings (``build_and_train_s`` covers build, train and save,
``eval_s`` the evaluation; device-hours = wall × one device), plus one launch's own time (start-up and planning,
from the pilots' summary.json). Each planned cell is priced by the mean of the
finished cells of its own design (same model and recipe), else of every design of that model and recipe; the
basis is stated per design. "Recipe" is everything in the cell's config under model, train, data and eval.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from analysis.collect import find_cell_dirs
from analysis.contract import Unreadable, read_json
from analysis.designs import Design
from analysis.errors import OptionError
from cellfiles.atomic import write_text
from cellfiles.layout import CELL_FILE, SUMMARY_FILE

ESTIMATE_FILE = "cost_estimate.json"
PHASES = ("build", "train", "save", "evaluate")
TIMING_PHASES = ("build+train+save", "evaluate")
RECIPE_KEYS = ("model", "train", "data", "eval")


@dataclass
class CostRecord:
    cell: str
    design: Design
    seed: object
    recipe: str
    basis: str                               # "cost record" | "timings"
    phases: dict[str, tuple[float, float]]   # phase → (wall_s, device_hours)
    wall_s: float                            # the whole cell (cell.json "seconds" / cost.total.wall_s)
    device_hours: float
    device: str = ""


def recipe_of(config: dict) -> str:
    payload = json.dumps({k: config.get(k) for k in RECIPE_KEYS}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:10]


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(
        value) and value >= 0 else None


def record_cost(record: dict) -> tuple[str, dict, float, float, str] | None:
    """(basis, phases, wall_s, device_hours, device) of a finished cell record, None if it holds no timing."""
    cost = record.get("cost")
    if isinstance(cost, dict) and isinstance(cost.get("phases"), dict):
        phases = {}
        for name, value in cost["phases"].items():
            if isinstance(value, dict) and _number(value.get("wall_s")) is not None:
                hours = _number(value.get("device_hours"))
                phases[str(name)] = (_number(value["wall_s"]), hours if hours is not None else value["wall_s"] / 3600)
        total = cost.get("total") if isinstance(cost.get("total"), dict) else {}
        wall = _number(total.get("wall_s")) or sum(w for w, _ in phases.values())
        hours = _number(total.get("device_hours")) or sum(h for _, h in phases.values())
        device = cost.get("device") if isinstance(cost.get("device"), dict) else {}
        name = str(device.get("name") or device.get("kind") or device.get("type") or "")
        if phases:
            return "cost record", phases, wall, hours, name
    timings = record.get("timings") if isinstance(record.get("timings"), dict) else {}
    train, evaluate = _number(timings.get("build_and_train_s")), _number(timings.get("eval_s"))
    if train is None and evaluate is None:
        return None
    phases = {"build+train+save": (train or 0.0, (train or 0.0) / 3600),
              "evaluate": (evaluate or 0.0, (evaluate or 0.0) / 3600)}
    wall = _number(record.get("seconds")) or (train or 0.0) + (evaluate or 0.0)
    return "timings", phases, wall, wall / 3600, ""


def read_summary(root: Path) -> dict | None:
    """summary.json of a sweep's last launch when it records the launch's start and end."""
    try:
        summary = read_json(root / SUMMARY_FILE)
    except Unreadable:
        return None
    if not isinstance(summary, dict):
        return None
    start, end = _number(summary.get("launched_at")), _number(summary.get("finished_at"))
    return summary if start is not None and end is not None and end >= start else None


def launch_overheads(sweep_dirs) -> list[float]:
    """Per sweep directory whose summary.json records when its last launch's process started: that launch's wall
    time minus the recorded seconds of the cells it ran (interpreter start-up, composing and planning the grid,
    the launcher's own work)."""
    out = []
    for root in sweep_dirs:
        summary = read_summary(Path(root))
        if summary is None:
            continue
        start, end = summary["launched_at"], summary["finished_at"]
        cells = summary.get("cells") if isinstance(summary.get("cells"), list) else []
        ran = 0.0
        for cell in cells:
            if not isinstance(cell, dict) or cell.get("status") not in ("done", "partial", "failed"):
                continue
            try:
                record = read_json(Path(str(cell.get("cell_dir"))) / CELL_FILE)
            except Unreadable:
                record = None
            seconds = _number(record.get("seconds")) if isinstance(record, dict) else None
            if seconds is None:
                break
            ran += seconds
        else:
            if end - start - ran >= 0:
                out.append(end - start - ran)
    return out


def load_records(sweep_dirs) -> list[CostRecord]:
    """Finished cells with a cost or timings under ``sweep_dirs`` (unreadable records are skipped)."""
    out = []
    for root in sweep_dirs:
        root = Path(root)
        if not root.is_dir():
            raise OptionError(f"--cost-from {root}: not a directory")
        for cell_dir in find_cell_dirs(root)[0]:
            try:
                record = read_json(cell_dir / CELL_FILE)
            except Unreadable:
                continue
            if not isinstance(record, dict) or record.get("status") != "done":
                continue
            priced = record_cost(record)
            config = record.get("config") if isinstance(record.get("config"), dict) else {}
            design = record.get("design") if isinstance(record.get("design"), dict) else {}
            if priced is None or not all(design.get(k) for k in ("model", "pooling", "attention")):
                continue
            basis, phases, wall, hours, device = priced
            out.append(CostRecord(record.get("cell") or cell_dir.name,
                                  Design(str(design["model"]), str(design["pooling"]), str(design["attention"])),
                                  design.get("seed"), recipe_of(config), basis, phases, wall, hours, device))
    return out


@dataclass
class DesignCost:
    design: Design
    cells: int
    basis: str
    phases: dict[str, tuple[float, float]]   # per cell
    wall_s: float                            # per cell: the sum of its phases
    device_hours: float


@dataclass
class CostPlan:
    designs: list[DesignCost]
    seeds: int
    parallel: int
    recipe: str
    notes: list[str] = field(default_factory=list)
    launch_s: float = 0.0                    # one launch's own time (start-up, planning), measured on the pilots
    setup_s: float = 0.0                     # a process's first-cell set-up outside the phases (imports)

    @property
    def cells(self) -> int:
        return sum(d.cells for d in self.designs)

    def phase_totals(self) -> dict[str, tuple[float, float]]:
        totals: dict[str, list[float]] = {}
        for d in self.designs:
            for phase, (wall, hours) in d.phases.items():
                acc = totals.setdefault(phase, [0.0, 0.0])
                acc[0] += wall * d.cells
                acc[1] += hours * d.cells
        return {k: (v[0], v[1]) for k, v in totals.items()}

    @property
    def device_hours(self) -> float:
        return sum(d.device_hours * d.cells for d in self.designs)

    @property
    def wall_s(self) -> float:
        """One cell at a time (the local launcher, one process): launch + set-up once + the cells' sum. N at once
        (a process per cell): launch + the longer of the longest cell and the sum / N, set-up in every cell."""
        total = sum(d.wall_s * d.cells for d in self.designs)
        if self.parallel <= 1:
            return self.launch_s + self.setup_s + total
        longest = max((d.wall_s for d in self.designs), default=0.0) + self.setup_s
        return self.launch_s + max(longest, (total + self.cells * self.setup_s) / self.parallel)


def _mean(records: list[CostRecord]) -> tuple[dict, float, float]:
    phases: dict[str, list[float]] = {}
    for r in records:
        for name, (wall, hours) in r.phases.items():
            acc = phases.setdefault(name, [0.0, 0.0])
            acc[0] += wall
            acc[1] += hours
    n = len(records)
    return ({k: (v[0] / n, v[1] / n) for k, v in phases.items()},
            sum(sum(w for w, _ in r.phases.values()) for r in records) / n, sum(r.device_hours for r in records) / n)


def setup_seconds(records: list[CostRecord]) -> float:
    """A cell's wall time beyond its phases is mostly the process's one-time imports (paid by the first cell a
    process runs): the largest such remainder among the records."""
    return max((max(0.0, r.wall_s - sum(w for w, _ in r.phases.values())) for r in records), default=0.0)


def cost_plan(records: list[CostRecord], designs: list[Design], seeds: int, parallel: int = 1,
              overheads: list[float] | None = None) -> CostPlan:
    if not records:
        raise OptionError("no finished cell with a cost record or timings to price the grid from")
    notes = []
    recipes = Counter(r.recipe for r in records)
    recipe = recipes.most_common(1)[0][0]
    if len(recipes) > 1:
        notes.append(f"the records hold {len(recipes)} recipes (model/train/data/eval configs); priced from the "
                     f"most common ({recipes[recipe]} of {len(records)} cells)")
    records = [r for r in records if r.recipe == recipe]
    models = sorted({r.design.model for r in records})
    out = []
    for design in designs:
        if design.model == "model" and len(models) == 1:     # a --grid without model=: the records' model
            design = Design(models[0], design.pooling, design.attention, design.extra)
        same_model = [r for r in records if r.design.model == design.model]
        if not same_model:
            raise OptionError(f"no finished cell of model '{design.model}' with this recipe to price "
                              f"{design.label()} (models with records: {', '.join(models)})")
        own = [r for r in same_model if (r.design.pooling, r.design.attention) == (design.pooling, design.attention)]
        used = own or same_model
        kinds = Counter(r.basis for r in used)
        basis = (f"{len(used)} cell(s) of {'this design' if own else 'other designs of this model'} ("
                 + ", ".join(f"{n} {k}" for k, n in kinds.items()) + ")")
        phases, wall, hours = _mean(used)
        out.append(DesignCost(design, seeds, basis, phases, wall, hours))
    launch = sum(overheads) / len(overheads) if overheads else 0.0
    if not overheads:
        notes.append("no pilot summary.json records its launch's start: the launcher's own start-up and planning "
                     "time is not included")
    return CostPlan(out, seeds, parallel, recipe, notes, launch, setup_seconds(records))


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def cost_table(plan: CostPlan) -> str:
    lines = [f"Cost plan: {plan.cells} cell(s) ({len(plan.designs)} design(s) × {plan.seeds} seed(s)), recipe "
             f"{plan.recipe}, {plan.parallel} cell(s) at a time.", ""]
    header = f"{'design':<48} {'cells':>5} {'wall/cell':>10} {'device-h':>9}  basis"
    lines += [header, "-" * len(header)]
    for d in plan.designs:
        lines.append(f"{d.design.label():<48} {d.cells:>5} {_hms(d.wall_s):>10} {d.device_hours * d.cells:>9.3f}  "
                     f"{d.basis}")
    lines += ["", f"{'phase':<20} {'wall (sum)':>11} {'device-h':>9}"]
    for phase, (wall, hours) in plan.phase_totals().items():
        lines.append(f"{phase:<20} {_hms(wall):>11} {hours:>9.3f}")
    lines.append(f"{'total (cells)':<20} {_hms(sum(d.wall_s * d.cells for d in plan.designs)):>11} "
                 f"{plan.device_hours:>9.3f}")
    if plan.setup_s:
        lines.append(f"{'process set-up':<20} {_hms(plan.setup_s):>11}  (imports before the first cell's phases; "
                     f"{'once' if plan.parallel <= 1 else 'per cell'})")
    if plan.launch_s:
        lines.append(f"{'launch (start-up)':<20} {_hms(plan.launch_s):>11}  (measured on the pilot's launches)")
    lines.append(f"Estimated wall time: {_hms(plan.wall_s)} ({plan.parallel} at a time); device-hours "
                 f"{plan.device_hours:.3f}.")
    lines += [f"Note: {n}" for n in plan.notes]
    return "\n".join(lines)


def as_json(plan: CostPlan) -> dict:
    return {"cells": plan.cells, "seeds": plan.seeds, "parallel": plan.parallel, "recipe": plan.recipe,
            "wall_s": plan.wall_s, "launch_s": plan.launch_s, "setup_s": plan.setup_s, "device_hours": plan.device_hours,
            "phases": {k: {"wall_s": w, "device_hours": h} for k, (w, h) in plan.phase_totals().items()},
            "designs": [{"design": d.design.label(), "model": d.design.model, "pooling": d.design.pooling,
                         "attention": d.design.attention, "cells": d.cells, "basis": d.basis,
                         "wall_s_per_cell": d.wall_s, "device_hours_per_cell": d.device_hours,
                         "phases_per_cell": {k: {"wall_s": w, "device_hours": h} for k, (w, h) in d.phases.items()}}
                        for d in plan.designs],
            "notes": plan.notes}


def write_cost(plan: CostPlan, out_dir: str | os.PathLike) -> dict:
    return {"json": write_text(Path(out_dir) / ESTIMATE_FILE, json.dumps(as_json(plan), indent=2) + "\n")}


def read_estimate(path: Path) -> dict | None:
    try:
        data = read_json(path)
    except Unreadable:
        return None
    return data if isinstance(data, dict) and isinstance(data.get("phases"), dict) else None


def cost_section(roots) -> str:
    """report.md section: the estimate file of a sweep next to what its finished cells recorded ("" if none)."""
    blocks = []
    for root in roots:
        path = Path(root) / ESTIMATE_FILE
        if not path.is_file():
            continue
        estimate = read_estimate(path)
        if estimate is None:
            blocks.append(f"`{path}` is unreadable or has no phases; no comparison.")
            continue
        actual = load_records([root])
        phases: dict[str, list[float]] = {}
        for r in actual:
            for name, (wall, hours) in r.phases.items():
                acc = phases.setdefault(name, [0.0, 0.0])
                acc[0] += wall
                acc[1] += hours
        rows = []
        for name in list(estimate["phases"]) + [p for p in phases if p not in estimate["phases"]]:
            est = estimate["phases"].get(name, {})
            act = phases.get(name)
            rows.append(_row(name, est.get("wall_s"), act[0] if act else None, est.get("device_hours"),
                             act[1] if act else None))
        rows.append(_row("total (sum over cells)", sum(float(p.get("wall_s", 0)) for p in estimate["phases"].values()),
                         sum(r.wall_s for r in actual) if actual else None, estimate.get("device_hours"),
                         sum(r.device_hours for r in actual) if actual else None))
        launches = launch_overheads([root])
        summary = read_summary(Path(root))
        if summary and isinstance(estimate.get("wall_s"), (int, float)):
            rows.append(_row("launch, start to end (cells one at a time + start-up)", estimate["wall_s"],
                             summary["finished_at"] - summary["launched_at"], None, None))
        if launches and isinstance(estimate.get("launch_s"), (int, float)):
            rows.append(_row("of which start-up and planning", estimate["launch_s"], launches[0], None, None))
        blocks.append(f"`{path}`: {estimate.get('cells', '?')} cell(s) estimated, {len(actual)} finished cell(s) "
                      f"with a cost or timings found.\n\n| phase | estimated wall | actual wall | actual / estimated "
                      f"| estimated device-h | actual device-h |\n|---|---|---|---|---|---|\n" + "\n".join(rows))
    if not blocks:
        return ""
    return "\n## Cost: estimate and actual\n\n" + "\n\n".join(blocks) + "\n"


def _row(name, est_wall, act_wall, est_hours, act_hours) -> str:
    def hms(v):
        return _hms(float(v)) if isinstance(v, (int, float)) else "—"

    def hours(v):
        return f"{float(v):.3f}" if isinstance(v, (int, float)) else "—"

    ratio = (f"{act_wall / est_wall:.2f}" if isinstance(est_wall, (int, float)) and est_wall
             and isinstance(act_wall, (int, float)) else "—")
    return f"| {name} | {hms(est_wall)} | {hms(act_wall)} | {ratio} | {hours(est_hours)} | {hours(act_hours)} |"
