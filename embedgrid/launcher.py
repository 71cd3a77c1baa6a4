"""Glue between Hydra and a cell: where the cell lives, what is printed, what a sweep does with failures.

The sweep-level parts (plan, skip done cells, dry run, summary, analysis) are in embedgrid/sweeper.py.
"""
from __future__ import annotations

import json
import logging
import os
import sys

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

import embedgrid.schema  # noqa: F401  (registers the config schema before Hydra composes)

log = logging.getLogger(__name__)


def in_submitit_job() -> bool:
    return "SUBMITIT_FOLDER" in os.environ  # set by submitit in the job process


def default_threads(cfg: DictConfig, hydra_cfg) -> None:
    """Under a submitit launcher, torch threads follow its cpus_per_task unless ``threads=`` is set."""
    cpus = hydra_cfg.launcher.get("cpus_per_task") if "launcher" in hydra_cfg else None
    if cfg.get("threads") is None and cpus and in_submitit_job():
        with open_dict(cfg):
            cfg.threads = int(cpus)


def run_cell(cfg: DictConfig):
    from embedgrid.cell import cell_state, run

    hydra_cfg = HydraConfig.get()
    cell_dir = hydra_cfg.runtime.output_dir
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    if cfg.dry_run:
        state = cell_state(cell_dir, cfg)
        print(f"[{state:>7}] {cell_dir}")
        return {"cell_dir": cell_dir, "status": state}
    default_threads(cfg, hydra_cfg)
    try:
        outcome = run(cfg, cell_dir)
    except Exception as error:
        if is_preemption(error):
            # Checkpoint written, cell.json says partial. In a submitit job, leave without a result so SLURM's
            # requeue (or submitit's) reruns this cell, which resumes; in-process, stop the whole sweep: Hydra's
            # basic launcher records an Exception and goes on to the next cell, but lets SystemExit through.
            log.warning("cell %s preempted: %s", cell_dir, error)
            raise SystemExit(f"preempted: {error}") from None
        if not multirun:
            raise
        log.error("cell %s failed: %s: %s (recorded in cell.json)", cell_dir, type(error).__name__, error)
        return {"cell_dir": cell_dir, "status": "failed", "error": f"{type(error).__name__}: {error}"}
    if outcome.rank == 0:  # several processes: one report, not one per rank
        print(f"\ncell: {outcome.cell_dir}  ({'skipped, already done' if outcome.skipped else outcome.status})")
        print(json.dumps(outcome.scores, indent=2), file=sys.stdout, flush=True)
    return {"cell_dir": str(outcome.cell_dir), "status": outcome.status, "skipped": outcome.skipped}


def is_preemption(error: BaseException) -> bool:
    if "embedgrid.train.loop" not in sys.modules:  # training never started: not a preemption
        return False
    from embedgrid.train.loop import Preempted

    return isinstance(error, Preempted)
