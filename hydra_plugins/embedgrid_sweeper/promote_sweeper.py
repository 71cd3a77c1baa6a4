"""hydra/sweeper=promote: the grid sweeper run twice, a cheap stage 1 over every design, then stage 2 over the
designs stage 1 promotes (``python -m analysis promote select``), each stage a resumable grid sweep of its own
under <sweep_dir>/stage1 and <sweep_dir>/stage2. A stage-2 cell whose identity equals a finished stage-1 cell's
(only evaluation differs: the evaluation settings are not part of a cell's identity) starts from that cell's
trained model, hard-linked, so it is evaluated without training again. The decision is written to
<sweep_dir>/promotion.json and the report of both stages, with Kendall's τ, to <sweep_dir>/promotion.md.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from omegaconf import open_dict, read_write

from cellfiles.layout import CELL_FILE, MODEL_DIR
from embedgrid.errors import GridFailed
from embedgrid.io import atomic_dir
from embedgrid.grid.sweeper import GridSweeper, PlannedCell

log = logging.getLogger(__name__)

DECISION_FILE = "promotion.json"
REUSED = (CELL_FILE, MODEL_DIR)     # what a stage-2 cell takes from its stage-1 twin


class PromoteSweeper(GridSweeper):
    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None, stage1=(),
                 stage2=(), keep: str = "not_worse", alpha: float = 0.05) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.stage1, self.stage2 = [str(o) for o in stage1 or ()], [str(o) for o in stage2 or ()]
        self.keep, self.alpha = str(keep), float(alpha)
        self.promoted: set[tuple] | None = None

    def select_cells(self, cells: list[PlannedCell]) -> list[PlannedCell]:
        return cells if self.promoted is None else [c for c in cells if c.design in self.promoted]

    def sweep(self, arguments: list[str]) -> Any:
        root = Path(str(self.config.hydra.sweep.dir))
        stage1, stage2 = root / "stage1", root / "stage2"
        print(f"promotion stage 1 (every design; {' '.join(self.stage1) or 'no extra overrides'}): {stage1}",
              flush=True)
        returns = self._stage(root, stage1, list(arguments) + self.stage1)
        if self.config.get("dry_run", False):
            print("promotion stage 2 runs the designs stage 1 promotes: run stage 1 first; nothing was run")
            return returns
        decision = root / DECISION_FILE
        self._analysis("promote", "select", str(stage1), "--keep", self.keep, "--alpha", str(self.alpha),
                       "--out", str(decision))
        rows = json.loads(decision.read_text())["promoted"]
        self.promoted = {(r["model"], r["pooling"], r["attention"]) for r in rows}
        second = list(arguments) + self.stage2
        reused = 0
        for cell in self.select_cells(self._plan_in(root, stage2, second)):
            reused += reuse_model(stage1 / Path(cell.cell_dir).name, Path(cell.cell_dir))
        print(f"\npromotion stage 2 ({len(self.promoted)} promoted design(s); "
              f"{' '.join(self.stage2) or 'no extra overrides'}; {reused} trained model(s) reused): {stage2}",
              flush=True)
        try:
            returns += self._stage(root, stage2, second)
        finally:
            self.promoted = None
        self._analysis("promote", "report", str(root))
        return returns

    def _stage(self, root: Path, directory: Path, arguments: list[str]):
        self._set_sweep_dir(directory)
        try:
            return super().sweep(arguments + [f"hydra.sweep.dir={directory}"])
        finally:
            self._set_sweep_dir(root)

    def _plan_in(self, root: Path, directory: Path, arguments: list[str]) -> list[PlannedCell]:
        self._set_sweep_dir(directory)
        try:
            return self.plan(arguments + [f"hydra.sweep.dir={directory}"])
        finally:
            self._set_sweep_dir(root)

    def _set_sweep_dir(self, directory: Path) -> None:
        with read_write(self.config), open_dict(self.config):
            self.config.hydra.sweep.dir = str(directory)

    @staticmethod
    def _analysis(*args: str) -> None:
        proc = subprocess.run([sys.executable, "-m", "analysis", *args])
        if proc.returncode != 0:
            raise GridFailed(f"python -m analysis {' '.join(args)} failed (exit {proc.returncode}); the cells are "
                             "kept, launch the same command again to resume")


def reuse_model(source: Path, target: Path) -> int:
    """Start ``target`` from the trained model of the finished cell ``source`` (same identity: same directory name);
    1 if done, 0 if there is nothing to reuse or ``target`` exists already. Files are hard-linked (copied where
    links are not possible) into a temporary directory renamed into place (``embedgrid.io.atomic_dir``), so a failure
    or a crash leaves no half cell."""
    if target.exists() or not (source / MODEL_DIR).is_dir():
        return 0
    try:
        record = json.loads((source / CELL_FILE).read_text())
    except (OSError, ValueError):
        return 0
    if not isinstance(record, dict) or record.get("status") != "done":
        return 0

    def write(tmp: Path) -> None:
        shutil.copy2(source / CELL_FILE, tmp / CELL_FILE)
        shutil.copytree(source / MODEL_DIR, tmp / MODEL_DIR, copy_function=_link_or_copy)

    atomic_dir(target, write)
    log.info("%s: trained model reused from %s", target, source)
    return 1


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
