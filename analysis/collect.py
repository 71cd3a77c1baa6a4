"""Read cell directories (cell.json + scores.json) under one or several sweep directories into tables.

Only the files of the cell-directory contract are read; nothing here imports embedgrid. Anything unusual (a
failed, unfinished or unrecorded cell, a missing seed, a NaN score, two cells for one design and seed) becomes a
``Problem`` listed in the report instead of an exception. Cells of one design whose configurations differ in more
than the seed and runtime-only keys are collected as ``mixes`` (analysis/mixing.py); ``analyze`` refuses them.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from analysis import mixing
from analysis.contract import Unreadable, cell_record, task_scores
from analysis.designs import Design
from cellfiles.layout import CELL_FILE, CHECKPOINT_DIR, HYDRA_CONFIG, HYDRA_DIR, MODEL_DIR, MTEB_DIR, SCORES_FILE

if TYPE_CHECKING:  # pandas itself is imported where the tables are built (a heavy import)
    import pandas as pd

# Folders inside a sweep that never hold cells (a cell's own sub-folders, our output, W&B files).
PRUNE = {"analysis", CHECKPOINT_DIR, MTEB_DIR, MODEL_DIR, "wandb", HYDRA_DIR, "__pycache__", ".submitit"}
DESIGN_KEYS = ("model", "pooling", "attention")


@dataclass(frozen=True)
class Problem:
    kind: str      # failed | partial | running | unrecorded | unreadable | malformed | no scores | nan score | ...
    where: str     # cell name, design + seed, or the path of an unreadable / malformed file
    detail: str = ""


@dataclass
class Collection:
    roots: list[Path]
    cells: pd.DataFrame    # one row per cell directory found (any status)
    scores: pd.DataFrame   # long: design, model, pooling, attention, seed, cell, grid, task, category,
    #                        in_domain (false where scores.json does not say), score
    problems: list[Problem] = field(default_factory=list)
    mixes: list[mixing.Mix] = field(default_factory=list)   # designs whose cells differ beyond runtime keys
    pool_over: tuple[str, ...] = ()

    @property
    def designs(self) -> list[Design]:
        return sorted(set(self.cells["design"])) if len(self.cells) else []


def find_cell_dirs(root: Path) -> tuple[list[Path], list[Path]]:
    """(dirs with cell.json, dirs Hydra started but no cell.json was written in), depth-first, sorted."""
    recorded, unrecorded = [], []
    for current, dirs, files in os.walk(root):
        here = Path(current)
        if CELL_FILE in files:
            recorded.append(here)
            dirs[:] = []
            continue
        if os.path.isfile(here / HYDRA_CONFIG) and here != root:
            unrecorded.append(here)
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if d not in PRUNE)
    return sorted(recorded), sorted(unrecorded)


def _lookup(config: dict, dotted: str):
    node = config
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _design(record: dict, by: tuple[str, ...]) -> tuple[Design, int | None]:
    config = record.get("config") or {}
    design = record.get("design") or {}

    def pick(key):
        value = design.get(key)
        if value is None:
            node = config.get(key)
            value = node.get("name") if isinstance(node, dict) else node
        return str(value) if value is not None else "?"

    extra = tuple((key, str(_by_value(record, config, key))) for key in by)
    seed = _seed(design.get("seed", config.get("seed")))
    return Design(pick("model"), pick("pooling"), pick("attention"), extra), seed


def _by_value(record: dict, config: dict, key: str):
    """A --by key: a cell.json field (``grid``), a provenance entry (``provenance.libraries.torch``) or a config
    key (``train.lr``)."""
    if key.startswith(mixing.PROVENANCE + "."):
        value = _lookup({mixing.PROVENANCE: mixing.provenance_of(record)}, key)
        return json.dumps(value, sort_keys=True) if isinstance(value, dict) else value
    return record.get(key) if key in record and key != "config" else _lookup(config, key)


def _seed(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None   # absent, or an unresolved interpolation in a Hydra config.yaml


def collect(sweep_dirs, by: tuple[str, ...] = (), include_unfinished: bool = False,
            pool_over: tuple[str, ...] = ()) -> Collection:
    """Collect every cell under ``sweep_dirs``; ``by`` adds config keys (dotted, e.g. ``train.lr``) to the design;
    ``pool_over``: keys whose differences between cells of one design are averaged over (stated in the report).

    Files that cannot be read or have the wrong shape are listed as problems (kind ``unreadable`` or
    ``malformed``, with the file's path) and the rest of the sweep is still collected."""
    import pandas as pd

    roots = [Path(d) for d in ([sweep_dirs] if isinstance(sweep_dirs, (str, os.PathLike)) else sweep_dirs)]
    for root in roots:
        if not root.is_dir():
            raise FileNotFoundError(f"sweep directory {root} does not exist")
    cells, scores, problems = [], [], []
    for root in roots:
        recorded, unrecorded = find_cell_dirs(root)
        for cell_dir in unrecorded:
            record = _hydra_record(cell_dir)
            design, seed = _design(record, by)
            known = all(getattr(design, key) != "?" for key in DESIGN_KEYS)
            if known:
                cells.append(_cell_row(cell_dir, record, design, seed, status="unrecorded"))
            problems.append(Problem("unrecorded", cell_dir.name,
                                    "Hydra created the directory but no cell.json was written (never ran, or died "
                                    "before starting)" + ("" if known else f"; its {HYDRA_CONFIG} names no design")))
        for cell_dir in recorded:
            _collect_cell(cell_dir, by, include_unfinished, cells, scores, problems)
    cell_frame = pd.DataFrame(cells, columns=["cell", "path", "grid", "design", "model", "pooling", "attention",
                                              "seed", "status", "error", "config_hash", "n_scores", "config",
                                              "provenance", "provenance_recorded", "cost"])
    score_frame = pd.DataFrame(scores, columns=["design", "model", "pooling", "attention", "seed", "cell", "grid",
                                                "task", "category", "in_domain", "score"])
    mixes = _mixes(cell_frame, tuple(pool_over))
    problems += _missing_cells(cell_frame) + _duplicate_cells(cell_frame) + _domain_conflicts(score_frame)
    problems += _mix_problems(mixes)
    return Collection(roots, cell_frame, score_frame, problems, mixes, tuple(pool_over))


def _collect_cell(cell_dir: Path, by, include_unfinished: bool, cells: list, scores: list, problems: list) -> None:
    path = cell_dir / CELL_FILE
    try:
        record, complaints = cell_record(path)
    except Unreadable as error:
        problems.append(Problem("unreadable", str(path), f"{error}; cell skipped"))
        return
    problems.extend(Problem("malformed", where, reason) for where, reason in complaints)
    if record is None:
        return
    design, seed = _design(record, by)
    unknown = [key for key in DESIGN_KEYS if getattr(design, key) == "?"]
    if unknown:
        problems.append(Problem("malformed", str(path), f"no {'/'.join(unknown)} in 'design' or 'config'; cell "
                                                        f"skipped"))
        return
    status = record.get("status", "unknown")
    row = _cell_row(cell_dir, record, design, seed, status)
    cells.append(row)
    if status != "done":
        problems.append(Problem(status, row["cell"], record.get("error") or f"status '{status}'"))
        if not include_unfinished:
            return
    path = cell_dir / SCORES_FILE
    if not path.exists():
        if status == "done":
            problems.append(Problem("no scores", row["cell"], "status done but scores.json is missing"))
        return
    try:
        entries, complaints = task_scores(path)
    except Unreadable as error:
        problems.append(Problem("unreadable", str(path), f"{error}; no scores of this cell are used"))
        return
    problems.extend(Problem("malformed", where, reason) for where, reason in complaints)
    for entry in entries:
        if math.isnan(entry["score"]):
            problems.append(Problem("nan score", row["cell"],
                                    f"{entry['task']}: main_score = {entry['raw']!r}; excluded from tests"))
        scores.append({**{k: row[k] for k in ("design", "model", "pooling", "attention", "seed", "cell", "grid")},
                       **{k: entry[k] for k in ("task", "category", "in_domain", "score")}})
        row["n_scores"] += 1


def _domain_conflicts(scores) -> list[Problem]:
    """A task marked in-domain in some cells and not in others is treated as in-domain everywhere."""
    if scores.empty:
        return []
    flags = scores.groupby("task")["in_domain"].agg(["any", "all"])
    mixed = flags[flags["any"] & ~flags["all"]].index
    if len(mixed):
        scores.loc[scores["task"].isin(mixed), "in_domain"] = True
    return [Problem("domain conflict", task, "in_domain is true in some cells and false in others; treated as "
                                             "in-domain in every cell") for task in mixed]


def _cell_row(cell_dir: Path, record: dict, design: Design, seed, status: str) -> dict:
    return {"cell": record.get("cell") or cell_dir.name, "path": str(cell_dir), "grid": record.get("grid"),
            "design": design, "model": design.model, "pooling": design.pooling, "attention": design.attention,
            "seed": seed, "status": status, "error": record.get("error"), "config_hash": record.get("config_hash"),
            "n_scores": 0, "config": record.get("config") or {}, "provenance": mixing.provenance_of(record),
            "provenance_recorded": isinstance(record.get(mixing.PROVENANCE), dict),
            "cost": record.get("cost") if isinstance(record.get("cost"), dict) else None}


def _hydra_record(cell_dir: Path) -> dict:
    try:
        import yaml

        with open(cell_dir / HYDRA_CONFIG) as f:
            config = yaml.safe_load(f) or {}
    except Exception:  # noqa: BLE001 - an unreadable Hydra file still leaves the directory listed
        config = {}
    if not isinstance(config, dict):
        config = {}
    grid = config.get("grid")
    return {"cell": cell_dir.name, "grid": grid if isinstance(grid, str) else None, "config": config}


def _missing_cells(cells) -> list[Problem]:
    """Seeds that some designs of a model have and others lack (no directory at all)."""
    problems = []
    if cells.empty:
        return problems
    for _, group in cells.groupby(cells["design"].map(lambda d: d.variant), sort=True):
        seeds = sorted({s for s in group["seed"] if s is not None and not _isnan(s)})
        for design in sorted(set(group["design"])):
            have = set(group.loc[group["design"] == design, "seed"])
            for seed in seeds:
                if seed not in have:
                    problems.append(Problem("missing", f"{design.label()} seed {seed}",
                                            "no cell directory (other designs have this seed)"))
    return problems


def _used(cells):
    """Cells whose scores enter the tables."""
    return cells[cells["n_scores"] > 0] if len(cells) else cells


def _duplicate_cells(cells) -> list[Problem]:
    """Several cells with equal configurations (runtime keys aside) for one design and seed: averaged as one seed.
    Cells that differ beyond runtime keys are mixes instead (refused or pooled, see _mixes)."""
    problems = []
    used = _used(cells)
    for (design, seed), group in used.groupby(["design", "seed"], sort=True):
        flats = [mixing.comparable(c, p) for c, p in zip(group["config"], group["provenance"])]
        if len(group) > 1 and not mixing.differences(list(group["cell"]), flats):
            problems.append(Problem(
                "duplicate", f"{design.label()} seed {seed}",
                f"{len(group)} cells ({', '.join(group['cell'])}) with the same configuration (runtime-only keys "
                f"aside) averaged as one seed"))
    return problems


def _mixes(cells, pool_over: tuple[str, ...]) -> list[mixing.Mix]:
    out = []
    used = _used(cells)
    for design, group in used.groupby("design", sort=True):
        if len(group) < 2:
            continue
        flats = [mixing.comparable(c, p) for c, p in zip(group["config"], group["provenance"])]
        mix = mixing.check_design(design.label(), list(group["cell"]), flats, pool_over)
        if mix is not None:
            out.append(mix)
    return out


def _mix_problems(mixes: list[mixing.Mix]) -> list[Problem]:
    problems = []
    for mix in mixes:
        problems += [Problem("pooled over", mix.design, f"averaged as seeds although {d.describe()} "
                                                        f"(--pool-over)") for d in mix.pooled]
        problems += [Problem("provenance differs", mix.design, d.describe()) for d in mix.flagged]
    return problems


def _isnan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)
