"""Glue between Hydra and a cell: where the cell lives, what is printed, what a sweep does with failures.

The sweep-level parts (plan, skip done cells, dry run, summary, analysis) are in embedgrid/grid/sweeper.py; for a
single run, ``CellGuard`` (a Hydra callback, conf/config.yaml) does the plan's checks before Hydra writes
``.hydra/`` into the cell directory.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict, read_write

import embedgrid.grid.schema  # noqa: F401  (registers the config schema before Hydra composes)
from embedgrid.errors import CellBusy, CellConflict, ConfigError, CorruptCellRecord, Preempted, TornFile
from embedgrid.grid import readiness
from embedgrid.grid.plan import resolve_plan

log = logging.getLogger(__name__)


def in_submitit_job() -> bool:
    return "SUBMITIT_FOLDER" in os.environ  # set by submitit in the job process


def default_threads(cfg: DictConfig, hydra_cfg) -> None:
    """Under a submitit launcher, torch threads follow its cpus_per_task unless ``threads=`` is set."""
    cpus = hydra_cfg.launcher.get("cpus_per_task") if "launcher" in hydra_cfg else None
    if cfg.get("threads") is None and cpus and in_submitit_job():
        with open_dict(cfg):
            cfg.threads = int(cpus)


class CellGuard(Callback):
    """Single runs: refuse a bad config, a foreign or busy directory or a corrupt record before Hydra writes
    ``.hydra/`` (Hydra's callbacks turn an Exception into a warning, so this leaves through SystemExit)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        from embedgrid.grid.celldir import CellDir

        previous = HydraConfig.instance().cfg
        try:
            HydraConfig.instance().set_config(config)  # ${hydra:...} in hydra.run.dir resolves as in the job
            embedgrid.grid.schema.check(config)
            if CellDir(Path(str(config.hydra.run.dir))).read_only:  # a done cell is still skipped: nothing to write
                with read_write(config.hydra), open_dict(config.hydra):
                    config.hydra.output_subdir = None
            if not config.dry_run:
                readiness.check(config)  # a dry run shows the cell as blocked instead
                try:
                    CellDir(Path(str(config.hydra.run.dir))).preflight(resolve_plan(config))
                except TornFile as error:  # the run moves it aside and rebuilds it
                    log.warning("%s", error)
        except (ConfigError, CellConflict, CellBusy, CorruptCellRecord) as error:
            raise SystemExit(f"{type(error).__name__}: {error}") from None
        except Exception as error:  # noqa: BLE001 - Hydra would turn it into a warning and train anyway
            raise SystemExit(f"the config was not checked ({type(error).__name__}: {error}); nothing was run") \
                from None
        finally:
            if previous is not None:
                HydraConfig.instance().set_config(previous)


def run_cell(cfg: DictConfig):
    from embedgrid import console

    console.configure(cfg.verbose)  # before the heavy imports below, which print progress bars on load
    from embedgrid.grid.cell import run
    from embedgrid.grid.celldir import CORRUPT, CellDir

    hydra_cfg = HydraConfig.get()
    cell_dir = hydra_cfg.runtime.output_dir
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    if cfg.dry_run:
        try:
            state = CellDir(cell_dir).state(resolve_plan(cfg))
        except (CorruptCellRecord, TornFile) as error:
            state, cell_dir = CORRUPT, f"{cell_dir}  -- {error}"
        blocked = readiness.blockers(cfg)
        if blocked:
            state = readiness.BLOCKED
        print(f"[{state:>7}] {cell_dir}")
        if blocked:
            print(readiness.describe(blocked))
        print(eval_listing(cfg))
        return {"cell_dir": cell_dir, "status": state}
    default_threads(cfg, hydra_cfg)
    shard = take_shard(cfg)
    try:
        if shard:
            from embedgrid.grid.shard import run_shard

            outcome = run_shard(cfg, cell_dir, shard)
        else:  # in a sweep, a cell with eval.shards > 1 leaves its evaluation to the sweeper's shard jobs
            outcome = run(cfg, cell_dir, defer_eval=multirun)
    except CellBusy as error:  # another sweep over this directory holds the cell: its run, not a failure here
        log.warning("cell %s is busy: %s", cell_dir, error)
        return {"cell_dir": cell_dir, "status": "busy", "error": f"{type(error).__name__}: {error}"}
    except Exception as error:
        if is_preemption(error):
            # Checkpoint written, cell.json says partial. In a submitit job, leave without a result so SLURM's
            # requeue (or submitit's) reruns this cell, which resumes; in-process, stop the whole sweep: Hydra's
            # basic launcher records an Exception and goes on to the next cell, but lets SystemExit through.
            log.warning("cell %s preempted: %s", cell_dir, error)
            raise SystemExit(f"preempted: {error}") from None
        log.error("traceback of the failure of %s", cell_dir, exc_info=True, extra={"console": False})
        if not multirun:  # one line on the console, exit status 1; the traceback is in launch.log
            raise SystemExit(f"{type(error).__name__}: {error}\ncell {cell_dir} failed (recorded in cell.json; "
                             f"traceback in {Path(cell_dir) / 'launch.log'})") from None
        log.error("cell %s failed: %s: %s (recorded in cell.json)", cell_dir, type(error).__name__, error)
        return {"cell_dir": cell_dir, "status": "failed", "error": f"{type(error).__name__}: {error}"}
    if outcome.rank == 0:  # several processes: one report, not one per rank
        print(cell_report(outcome), flush=True)
    return {"cell_dir": str(outcome.cell_dir), "status": outcome.status, "skipped": outcome.skipped,
            "shards": outcome.shards}


def take_shard(cfg: DictConfig) -> list[str] | None:
    """The tasks of an evaluation shard job (``eval_shard``, set by the sweeper), cleared from ``cfg`` so that
    the cell's record holds the cell's own config."""
    shard = cfg.get("eval_shard")
    if not shard:
        return None
    names = [str(name) for name in shard]
    with open_dict(cfg):
        cfg.eval_shard = None
    return names


def eval_listing(cfg: DictConfig) -> str:
    """The dry run's list of the evaluation tasks (and, offline, the hub datasets they would need)."""
    from embedgrid.evaluate.suite import listing
    from embedgrid.grid.schema import eval_config

    return listing(eval_config(cfg))


def cell_report(outcome) -> str:
    """The end of a cell's console output: where it went, how long it took, its category means."""
    from embedgrid.grid.celldir import CellDir
    from embedgrid.console import category_table

    cell = CellDir(outcome.cell_dir)
    record = cell.read_record() or {}
    how = "skipped, already done" if outcome.skipped else f"{outcome.status} in {_duration(record.get('seconds'))}"
    if outcome.shards:
        how += f"; evaluation in {len(outcome.shards)} shard jobs"
    lines = [f"\ncell {cell.path}  ({how}; full log: {cell.path / 'launch.log'})"]
    categories = record.get("category_scores")
    if categories:
        lines.append(category_table(categories))
    return "\n".join(lines)


def _duration(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return "?"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def is_preemption(error: BaseException) -> bool:
    return isinstance(error, Preempted)
