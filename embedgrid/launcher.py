"""Glue between Hydra and a cell: where the cell lives, what is printed, what a sweep does with failures."""
from __future__ import annotations

import json
import logging
import sys

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def run_cell(cfg: DictConfig):
    from embedgrid.cell import cell_state, run

    hydra_cfg = HydraConfig.get()
    cell_dir = hydra_cfg.runtime.output_dir
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    if cfg.dry_run:
        state = cell_state(cell_dir, cfg)
        print(f"[{state:>7}] {cell_dir}")
        return {"cell_dir": cell_dir, "status": state}
    try:
        outcome = run(cfg, cell_dir)
    except Exception as error:
        if not multirun:
            raise
        log.error("cell %s failed: %s: %s (recorded in cell.json)", cell_dir, type(error).__name__, error)
        return {"cell_dir": cell_dir, "status": "failed", "error": f"{type(error).__name__}: {error}"}
    print(f"\ncell: {outcome.cell_dir}  ({'skipped, already done' if outcome.skipped else outcome.status})")
    print(json.dumps(outcome.scores, indent=2), file=sys.stdout, flush=True)
    return {"cell_dir": str(outcome.cell_dir), "status": outcome.status, "skipped": outcome.skipped}
