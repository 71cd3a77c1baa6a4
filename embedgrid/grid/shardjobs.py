"""Sharded evaluation (``eval.shards=K``), the sweeper's side: the shard jobs of every cell that ended
``eval_pending``, through the sweep's own launcher.

With a submitit launcher (SLURM, or local processes) all shards of all such cells are one job array, submitted
with the launcher's settings; a shard whose job ended without a result (cancelled, killed, its node lost) is
submitted again, alone, once its array is over. With Hydra's basic launcher the shards run one after another
in this process. Each shard job is the cell's own job with ``eval_shard=[its tasks]`` (embedgrid.grid.shard).
A cell's final state is read from its directory: done when every task is scored; otherwise failed, naming why.
"""
from __future__ import annotations

import logging
from pathlib import Path

from hydra.core.utils import JobStatus, filter_overrides

from embedgrid.grid.celldir import DONE, CellDir

log = logging.getLogger(__name__)
RERUNS = 1  # a shard whose job died is submitted again this many times


def shard_overrides(overrides: list[str], names: list[str]) -> list[str]:
    """The cell's overrides plus its shard's tasks; no ``.hydra/`` rewrite (shards share the cell directory)."""
    quoted = ",".join("'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'" for name in names)
    return [*overrides, f"eval_shard=[{quoted}]", "hydra.output_subdir=null"]


def submit(launcher, job_overrides: list[list[str]], initial_job_idx: int) -> list:
    """hydra-submitit-launcher's ``launch`` up to its ``map_array``, without its wait: the array's jobs (the
    plugin's executor set-up, repeated so that a job ending without a result does not stop the wait for the
    others)."""
    import submitit
    from hydra.core.singleton import Singleton
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    params = dict(launcher.params)
    init_keys = {"max_num_timeout", "submitit_folder"}
    executor = submitit.AutoExecutor(cluster=launcher._EXECUTOR, folder=params["submitit_folder"],
                                     **{f"{launcher._EXECUTOR}_max_num_timeout": params["max_num_timeout"]})
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"{launcher._EXECUTOR}_{k}": v for k, v in params.items()
                                  if k not in init_keys})
    job_params = [(list(overrides), "hydra.sweep.dir", initial_job_idx + i, f"job_id_for_{initial_job_idx + i}",
                   Singleton.get_state()) for i, overrides in enumerate(job_overrides)]
    return executor.map_array(launcher, *zip(*job_params))


def launch_all(launcher, job_overrides: list[list[str]], initial_job_idx: int) -> list:
    """Each shard job's JobReturn, or the error of a job that ended without one (it died)."""
    if getattr(launcher, "_EXECUTOR", None) is None:  # Hydra's basic launcher: in this process, in turn
        return list(launcher.launch(job_overrides, initial_job_idx=initial_job_idx))
    outcomes = []
    for i, overrides in enumerate(job_overrides):
        log.info("\t#%d : %s", initial_job_idx + i, " ".join(filter_overrides(overrides)))
    for job in submit(launcher, job_overrides, initial_job_idx):
        try:
            outcomes.append(job.results()[0])
        except Exception as error:  # noqa: BLE001 - submitit's UncompletedJobError / FailedJobError
            log.warning("evaluation shard job %s ended without a result: %s", job.job_id, str(error)[:300])
            outcomes.append(error)
    return outcomes


def run_shards(launcher, cells: list, initial_job_idx: int) -> None:
    """Run the shard jobs of ``cells`` (PlannedCell with ``shards``) and set each cell's status and error."""
    jobs = [(cell, names) for cell in cells for names in cell.shards]
    errors: dict[str, list[str]] = {cell.cell_dir: [] for cell in cells}
    for attempt in range(RERUNS + 1):
        if not jobs:
            break
        print(f"evaluation: {len(jobs)} shard jobs" + (f" (again: {len(jobs)} died)" if attempt else ""),
              flush=True)
        outcomes = launch_all(launcher, [shard_overrides(c.overrides, names) for c, names in jobs],
                              initial_job_idx)
        initial_job_idx += len(jobs)
        died = []
        for (cell, names), outcome in zip(jobs, outcomes):
            if isinstance(outcome, Exception):
                died.append((cell, names))
                errors[cell.cell_dir].append(f"shard job for {', '.join(names)} died "
                                             f"({type(outcome).__name__}: {str(outcome).splitlines()[0][:200]})")
            elif outcome.status != JobStatus.COMPLETED:
                errors[cell.cell_dir].append(f"{type(outcome._return_value).__name__}: {outcome._return_value}")
            elif isinstance(outcome.return_value, dict) and outcome.return_value.get("status") == "failed":
                errors[cell.cell_dir].append(outcome.return_value.get("error") or "shard failed")
        jobs = died
    for cell in cells:
        final_state(cell, errors[cell.cell_dir])


def final_state(cell, errors: list[str]) -> None:
    """done when the directory says so (every task scored); else failed, with the shards' errors or the tasks
    left unscored."""
    record = CellDir(cell.cell_dir).read_record() or {}
    if record.get("status") == DONE:
        cell.status, cell.error = "done", None
        return
    cell.status = "failed"
    cell.error = "; ".join(errors) or (f"evaluation shards ended with the cell {record.get('status')} "
                                       f"(see {Path(cell.cell_dir) / 'launch.log'})")
