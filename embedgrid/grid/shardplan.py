"""Sharded evaluation (``eval.shards=K``): the training job's part, which hands the evaluation to shard jobs.

In a sweep, a cell with ``eval.shards`` > 1 trains and saves its model as any cell, then, instead of evaluating,
splits the tasks not yet scored into K shards of about equal cost (embedgrid.evaluate.shards) and records
``eval_pending`` with the plan; the sweeper runs the shard jobs (embedgrid.grid.shardjobs), each one
embedgrid.grid.shard.run_shard.
"""
from __future__ import annotations

import logging
from dataclasses import replace

from embedgrid.errors import ConfigError
from embedgrid.evaluate.config import EvalConfig
from embedgrid.grid.celldir import EVAL_PENDING, CellDir
from embedgrid.grid.plan import CellPlan

log = logging.getLogger(__name__)


def deferred_tasks(plan: CellPlan, cell: CellDir, world) -> list[str]:
    """The tasks to hand to evaluation shard jobs: the unscored ones when ``eval.shards`` > 1, else none.
    A cell on several ranks evaluates on its ranks in its own job instead (said in the log)."""
    shards = plan.eval.shards
    if shards <= 1:
        return []
    if world.size > 1:
        log.info("eval.shards=%d: this cell runs on %d ranks, which evaluate it in this job", shards, world.size)
        return []
    return cell.unscored(plan)


def shard_config(evaluation: EvalConfig, names: list[str]) -> EvalConfig:
    """The cell's evaluation settings restricted to the tasks ``names`` (the settings hash is unchanged)."""
    stray = [name for name in names if name not in evaluation.all_tasks]
    if stray:
        raise ConfigError(f"eval_shard names {stray}, which are not tasks of this cell's eval.tasks; eval_shard is "
                          "set by the sweeper for an evaluation shard job, leave it null")
    return replace(evaluation, tasks=[t for t in evaluation.tasks if t in names],
                   custom={k: v for k, v in evaluation.custom.items() if k in names})


def local_task_names(evaluation: EvalConfig) -> set[str]:
    """Tasks whose data is on this machine (counted, not looked up, for the shard plan)."""
    from embedgrid.evaluate.tasks import OFFLINE_TASKS

    return set(OFFLINE_TASKS) | set(evaluation.custom) | {n for n in evaluation.all_tasks
                                                          if n.startswith(("Mock", "LegacyMock"))}


def defer_evaluation(plan: CellPlan, cell: CellDir, pending: list[str], **fields) -> list[list[str]]:
    """After training: the shard plan of the ``pending`` tasks, recorded in ``cell.json`` (status eval_pending,
    ``eval_shards``); returns the shards (task names per job)."""
    from embedgrid.evaluate.run import resolve_tasks
    from embedgrid.evaluate.shards import plan_shards

    evaluation = shard_config(plan.eval, pending)
    tasks = resolve_tasks(list(evaluation.all_tasks), max_samples=evaluation.max_samples,
                          task_samples=evaluation.task_samples, sample_seed=evaluation.sample_seed,
                          custom=evaluation.custom, benchmark=evaluation.benchmark)
    shards = plan_shards(tasks, plan.eval.shards, local_task_names(evaluation))
    log.info("evaluation in %d shard jobs (balanced by %s): %s", len(shards.shards), shards.basis,
             "; ".join(", ".join(shard) for shard in shards.shards))
    cell.record(plan, status=EVAL_PENDING, eval_shards=shards.to_dict(), **fields)
    return shards.shards
