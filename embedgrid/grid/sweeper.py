"""Hydra's basic sweeper (cartesian product of the overrides), made safe to launch, relaunch and requeue.

Before anything is submitted it composes every cell's config, checks it (embedgrid.grid.schema.check: a bad value
stops the sweep before any job), derives the cell directory (``${cell_name:}``) and reads its state, so that
  * ``dry_run=true`` lists the cells (state + directory) and runs nothing, whatever the launcher;
  * finished cells are skipped without a job (no SLURM submission for them), unfinished ones run and resume;
  * an unwritable sweep directory or an unreachable SLURM controller fails before any job starts;
  * a cell whose directory is refused (another config's, not a cell directory, busy, or with a corrupt
    ``cell.json``) is reported as failed with the reason and not launched, while the other cells run.
After the jobs it prints a summary (done / failed / skipped), writes ``<sweep_dir>/summary.json``, runs the
analysis over the sweep directory (``analyze=true``), and exits non-zero if any cell failed.
Hydra has no hook for this: callbacks swallow exceptions and never see job returns, hence a sweeper.
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus, filter_overrides

from cellfiles.layout import SUMMARY_FILE
from embedgrid.errors import (CellBusy, CellConflict, CorruptCellRecord, GridFailed, SweepConflict,  # noqa: F401
                              SweepDirUnwritable, TornFile)
from embedgrid.grid import readiness
from embedgrid.grid.celldir import EVAL_PENDING
from embedgrid.grid.costplan import composed_recipe, estimate
from embedgrid.grid.shardjobs import run_shards
from embedgrid.secrets import redact, redact_text

log = logging.getLogger(__name__)


@dataclass
class PlannedCell:
    overrides: list[str]
    cell_dir: str
    state: str                  # done | partial | failed | new, or refused / busy / corrupt (see error)
    status: str | None = None   # after the launch: done | partial | failed | skipped
    error: str | None = None
    repair: bool = False        # corrupt but repairable: a torn file the run moves aside and rebuilds
    design: tuple = ()          # (model, pooling, attention) of the composed config
    blockers: list = field(default_factory=list, repr=False)  # readiness.Blocker of a blocked cell
    shards: list = field(default_factory=list, repr=False)    # eval_pending: task names per evaluation shard job

    @property
    def runnable(self) -> bool:
        return self.state in ("new", "partial", "failed") or self.repair


REFUSED, BUSY = "refused", "busy"


def ensure_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as error:
        raise SweepDirUnwritable(f"sweep directory {directory} is not writable ({error}); set hydra.sweep.dir= "
                                 f"or grid= to a writable place") from None


def is_slurm_launcher(launcher) -> bool:
    return getattr(launcher, "_EXECUTOR", None) == "slurm"


class GridSweeper(BasicSweeper):
    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.recipes: dict[str, str] = {}  # cell_dir -> cost recipe (embedgrid.grid.costplan), for the dry run

    def plan(self, arguments: list[str]) -> list[PlannedCell]:
        """Every cell of the sweep with its directory and state, composed exactly as the jobs will be."""
        from embedgrid.grid.celldir import CORRUPT, CellDir
        from embedgrid.grid.plan import resolve_plan
        from embedgrid.grid.schema import check

        params = self._parse_config() + list(arguments)
        overrides = OverridesParser.create(config_loader=self.hydra_context.config_loader).parse_overrides(params)
        jobs = [job for batch in self.split_arguments(overrides, None) for job in batch]
        cells, previous = [], HydraConfig.instance().cfg
        try:
            for job in jobs:
                cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(job))
                HydraConfig.instance().set_config(cfg)  # ${hydra:...} and ${cell_name:} resolve as in the job
                check(cfg)  # first: a name that would leave the sweep is refused before it becomes a path
                cell_dir = str(Path(cfg.hydra.sweep.dir) / str(cfg.hydra.sweep.subdir))
                check_inside(Path(cell_dir), Path(cfg.hydra.sweep.dir))
                cell = plan_cell(list(job), CellDir(cell_dir), resolve_plan(cfg), CORRUPT)
                cell.design = (str(cfg.model.name), str(cfg.pooling.name), str(cfg.attention.name))
                blocked = readiness.blockers(cfg) if cell.state != "done" else []
                if blocked:
                    cell.state, cell.blockers = readiness.BLOCKED, blocked
                    cell.error = "; ".join(b.short() for b in blocked)
                cells.append(cell)
                self.recipes[cell_dir] = composed_recipe(cfg)
        finally:
            if previous is not None:
                HydraConfig.instance().set_config(previous)
        return cells

    def select_cells(self, cells: list[PlannedCell]) -> list[PlannedCell]:
        """The cells this sweep runs (all; a subclass may keep some, e.g. the promoted designs)."""
        return cells

    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        from embedgrid.grid.cellid import check_path_name

        from embedgrid.errors import ConfigError

        tic = time.perf_counter()
        try:  # a user error: its message once, before any job, without a traceback
            check_path_name("grid", self.config.grid)  # before it becomes the sweep directory
            cells = self.select_cells(self.plan(arguments))
        except ConfigError as error:
            raise SystemExit(f"error: {error}") from None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        log.info("planned %d cells in %.2f s", len(cells), time.perf_counter() - tic)
        refuse_shared_dirs(cells)
        if self.config.get("dry_run", False):
            print_plan(cells, sweep_dir)
            print(estimate([(c.cell_dir, self.recipes.get(c.cell_dir, "")) for c in cells if c.runnable], sweep_dir))
            return []
        blocked = [c for c in cells if c.state == readiness.BLOCKED]
        if blocked:  # user errors: every cause once, before any job
            raise SystemExit(readiness.describe([b for c in blocked for b in c.blockers], len(blocked))
                             + "\n(dry_run=true lists the cells)")
        ensure_writable(sweep_dir)
        todo = [c for c in cells if c.runnable]
        for cell in cells:
            if cell.state == "done":
                cell.status = "skipped"
            elif cell.state == BUSY:
                cell.status = BUSY
            elif not cell.runnable:
                cell.status = "failed"
        if todo and is_slurm_launcher(self.launcher):
            from embedgrid.slurm import check_controller

            check_controller()
        from embedgrid.grid.hydra_callbacks import save_redacted_yaml

        save_redacted_yaml(self.config, sweep_dir / "multirun.yaml")
        returns = []
        batch_size = self.max_batch_size or len(todo) or 1
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            try:
                results = self.launcher.launch([c.overrides for c in batch], initial_job_idx=start)
            except Exception as error:  # noqa: BLE001 - submitit's, not imported unless the launcher is
                if type(error).__name__ != "UncompletedJobError":
                    raise
                raise GridFailed(job_ended_without_result(error, sweep_dir)) from None
            for cell, result in zip(batch, results):
                collect(cell, result)
            returns.append(results)
        pending = [c for c in todo if c.status == EVAL_PENDING]
        if pending:  # eval.shards > 1: trained; their tasks are scored by shard jobs of their own
            run_shards(self.launcher, pending, initial_job_idx=len(todo))
        if int(os.environ.get("RANK", "0")) == 0:  # `torchrun ... -m`: every rank sweeps, one summarizes
            summary = summarize(cells, sweep_dir)
            if self.config.get("analyze", False):
                run_analysis(sweep_dir, summary)
        failed = [c for c in cells if c.status == "failed"]
        if failed:  # the table and the resume command; tracebacks are in each cell's launch.log and cell.json
            print(failure_table(failed, cells), flush=True)
            raise SystemExit(1)
        return returns


def check_inside(cell_dir: Path, sweep_dir: Path) -> None:
    """The cell directory, links resolved, lies inside the sweep directory (checked before anything is written)."""
    from embedgrid.errors import ConfigError

    if not cell_dir.resolve().is_relative_to(sweep_dir.resolve()) or cell_dir.resolve() == sweep_dir.resolve():
        raise ConfigError(f"hydra.sweep.subdir={cell_dir.name!r} puts the cell in {cell_dir.resolve()}, outside the "
                          f"sweep directory {sweep_dir.resolve()}; use the default subdir ${{cell_name:}}")


def plan_cell(overrides: list[str], cell, plan, corrupt: str) -> PlannedCell:
    """One cell's state from its plan (embedgrid.grid.plan.CellPlan); a directory the cell may not use marks this
    cell, not the sweep."""
    try:
        return PlannedCell(overrides, str(cell.path), cell.preflight(plan))
    except CorruptCellRecord as error:
        return PlannedCell(overrides, str(cell.path), corrupt, error=f"{type(error).__name__}: {error}")
    except TornFile as error:  # repaired when the cell runs; a dry run only reports it
        return PlannedCell(overrides, str(cell.path), corrupt, error=f"{type(error).__name__}: {error}",
                           repair=True)
    except CellBusy as error:  # another process (a concurrent sweep) runs it: reported busy, never failed
        return PlannedCell(overrides, str(cell.path), BUSY, error=f"{type(error).__name__}: {error}")
    except CellConflict as error:
        return PlannedCell(overrides, str(cell.path), REFUSED, error=f"{type(error).__name__}: {error}")


def refuse_shared_dirs(cells: list[PlannedCell]) -> None:
    """Two jobs in one cell directory would race; they differ only in settings outside the cell's identity."""
    seen: dict[str, PlannedCell] = {}
    for cell in cells:
        if cell.cell_dir in seen:
            a, b = set(seen[cell.cell_dir].overrides), set(cell.overrides)
            keys = sorted({o.split("=", 1)[0].lstrip("+~") for o in a ^ b})  # by key: a secret's value is redacted
            raise SweepConflict(f"cells differing only in {', '.join(keys)} ({' '.join(sorted(redact(list(a - b))))} "
                                f"vs {' '.join(sorted(redact(list(b - a))))}) map to the same cell {cell.cell_dir}: "
                                f"{', '.join(keys)} do{'es' if len(keys) == 1 else ''} not change the trained model "
                                "(eval, logging, threads, secrets); sweep those in separate launches")
        seen[cell.cell_dir] = cell


def job_ended_without_result(error: Exception, sweep_dir: Path) -> str:
    """What to say when a job ended without returning (``scancel``, a node failure): which job, its state, and
    that the batch's other jobs go on, each recording its own cell, so the same command resumes."""
    job, state = re.search(r"Job (\S+) \(task", str(error)), re.search(r"\(state: (\w+)\)", str(error))
    job, state = job.group(1) if job else "?", state.group(1) if state else "unknown"
    return redact_text(f"job {job} ended without returning a result (state {state}). The other jobs of this batch "
                       f"keep running and each records its own cell under {sweep_dir}; launch the same command "
                       "again to resume (finished cells are skipped, an interrupted one resumes from its "
                       "checkpoint)")


def collect(cell: PlannedCell, result) -> None:
    """Outcome of one job: run_cell's dict, or the error of a job that failed outside the cell."""
    if result.status == JobStatus.COMPLETED and isinstance(result.return_value, dict):
        value = result.return_value
        cell.status = "skipped" if value.get("skipped") else value.get("status", "done")
        cell.error = value.get("error")
        cell.shards = value.get("shards") or []
    elif result.status == JobStatus.COMPLETED:
        cell.status = "done"
    else:
        cell.status, cell.error = "failed", f"{type(result._return_value).__name__}: {result._return_value}"


def resume_command() -> str:
    """The command that launched this sweep, to relaunch it (finished cells are skipped, the rest resume)."""
    import shlex
    import sys

    return redact_text(" ".join(["python", *(shlex.quote(a) for a in sys.argv)]))


def failure_table(failed: list[PlannedCell], cells: list[PlannedCell]) -> str:
    width = max(len(Path(c.cell_dir).name) for c in failed)
    lines = [f"\n{len(failed)} of {len(cells)} cells failed (traceback: <cell>/launch.log and cell.json):",
             f"  {'cell':<{width}}  reason"]
    for cell in failed:
        reason = (cell.error or "unknown").strip().splitlines()[0]
        reason = reason if len(reason) <= 160 else reason[:157] + "..."
        lines.append(f"  {Path(cell.cell_dir).name:<{width}}  {reason}")
    lines.append(f"resume (finished cells are skipped): {resume_command()}")
    return redact_text("\n".join(lines))


def print_plan(cells: list[PlannedCell], sweep_dir: Path) -> None:
    counts = {s: sum(c.state == s for c in cells) for s in dict.fromkeys(c.state for c in cells)}
    print(f"dry run: {len(cells)} cells in {sweep_dir} ({', '.join(f'{n} {s}' for s, n in counts.items())}); "
          "nothing was run")
    shared = set.intersection(*(set(c.overrides) for c in cells)) if cells else set()
    causes = [b for c in cells for b in c.blockers]
    for cell in cells:
        varying = [o for o in filter_overrides(cell.overrides) if o not in shared]
        error = f"  -- {cell.error}" if cell.error and not cell.blockers else ""
        print(redact_text(f"  [{cell.state:>7}] {cell.cell_dir}   {' '.join(varying)}{error}"))
    if causes:
        print(redact_text(readiness.describe(causes, sum(bool(c.blockers) for c in cells))
                          .replace("; nothing was run:", " (blocked: fix before launching):")))


def summarize(cells: list[PlannedCell], sweep_dir: Path) -> dict:
    from embedgrid.io import write_json

    counts = {s: sum(c.status == s for c in cells) for s in ("done", "skipped", "partial", "failed", BUSY)}
    summary = {"sweep_dir": str(sweep_dir), "launched_at": process_started_at(), "finished_at": time.time(),
               "counts": counts,
               "cells": [asdict(c) for c in cells]}
    write_json(sweep_dir / SUMMARY_FILE, redact(summary))
    print()
    for cell in cells:
        line = f"  [{cell.status:>7}] {cell.cell_dir}"  # a failed cell's reason: in the table that follows
        print(redact_text(line + (f"  -- {cell.error}" if cell.error and cell.status != "failed" else "")))
    print(f"sweep {sweep_dir}: {len(cells)} cells: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    if counts[BUSY]:
        print(f"{counts[BUSY]} cells are being run by another process (busy); launch the same command again once "
              "it has finished to pick up any it left unfinished")
    return summary


def process_started_at() -> float | None:
    """When this process started (Linux /proc; None elsewhere): with finished_at, the launch's whole wall time,
    start-up and planning included, which the cost plan adds to the cells' own times."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def run_analysis(sweep_dir: Path, summary: dict) -> None:
    """`python -m analysis <sweep_dir>` in a subprocess: a failing or missing analysis never loses the sweep."""
    import importlib.util
    import subprocess
    import sys

    if not summary["counts"]["done"] + summary["counts"]["skipped"]:
        return
    try:
        available = importlib.util.find_spec("analysis.__main__") is not None
    except (ImportError, ValueError):
        available = False
    if not available:
        log.warning("analysis skipped: the `analysis` package has no CLI here (python -m analysis %s)", sweep_dir)
        return
    print(f"\nanalysis: python -m analysis {sweep_dir}", flush=True)
    # --wandb-auto: logged to the sweep's W&B group when its cells logged to W&B; ends with the design table.
    # A relaunch where no cell finished changes no score: its analysis is not logged as a second W&B run.
    wandb = ["--wandb-auto"] if summary["counts"]["done"] else []
    if not wandb:
        print("(no cell finished in this launch: the analysis is rewritten on disk, not logged to W&B again)")
    proc = subprocess.run([sys.executable, "-m", "analysis", str(sweep_dir), *wandb])
    if proc.returncode != 0:
        log.warning("analysis of %s failed (exit %d); the cells are fine, rerun `python -m analysis %s`",
                    sweep_dir, proc.returncode, sweep_dir)
