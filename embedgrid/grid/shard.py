"""One evaluation shard job (``eval.shards=K``): the cell's saved model scores the shard's tasks.

Each shard loads the saved model, scores its tasks into the cell's mteb cache, then, under the cell lock, merges
its scores into ``scores.json``. The shard that finds every task scored records the cell ``done`` as an unsharded
cell is recorded (the scores of the whole suite, its category means, the cost of every phase). The plan of the
shards is made after training (embedgrid.grid.shardplan); the sweeper runs them (embedgrid.grid.shardjobs).
"""
from __future__ import annotations

import logging
import time
import traceback
from dataclasses import replace

from omegaconf import DictConfig

from embedgrid.errors import Preempted, ShardFailed
from embedgrid.grid.celldir import DONE, EVAL_PENDING, FAILED, PARTIAL, CellDir
from embedgrid.grid.plan import CellPlan, resolve_plan
from embedgrid.grid.shardplan import shard_config

log = logging.getLogger(__name__)


def run_shard(cfg: DictConfig, cell_dir, names: list[str]):
    """One evaluation shard job: score ``names`` with the cell's saved model; the last shard records the cell
    done. Returns the CellOutcome (status done, or eval_pending while other shards' tasks are unscored)."""
    from embedgrid.cost import CostMeter
    from embedgrid.grid.cell import CellOutcome, _setup_runtime, evaluate_cell
    from embedgrid.model.encoder import load_encoder
    from embedgrid.train.distributed import all_sum, init_from_env, run_on_main
    from embedgrid.train.signals import StopNow, hand_over

    plan = resolve_plan(cfg)  # the only read of the composed config, as in cell.run
    world = init_from_env()
    cell = CellDir(cell_dir)
    shard = replace(plan, eval=shard_config(plan.eval, names))
    cell.check_is_cell_dir()
    cell.check_same_config(plan)
    if not cell.has_model:
        raise ShardFailed(f"evaluation shard {names}: {cell.model_dir} holds no trained model; launch the sweep "
                          "again (the cell trains first, then its shards run)")
    meter, t1 = None, time.perf_counter()
    try:
        device = _setup_runtime(plan)
        meter = CostMeter(device, world.size)
        with meter.phase("build"):
            encoder = load_encoder(cell.model_dir, device=device, spec=plan.encoder)
        meter.watch(encoder)
        truncated_before = encoder.truncated
        with StopNow(), meter.phase("evaluate", dtype=str(plan.encoder.dtype),
                                    reduce=lambda value: all_sum(value, world)):
            scores, _ = evaluate_cell(shard, encoder, cell, world)
    except BaseException as error:
        if world.is_main:
            _record_failure(plan, cell, names, error, meter)
        hand_over(error)  # SIGUSR2 under submitit: its requeue of this shard job, now that cell.json is written
        if isinstance(error, (Preempted, KeyboardInterrupt, SystemExit)):
            raise
        raise ShardFailed(f"evaluation shard {', '.join(names)}: {type(error).__name__}: {error}") from error

    def merge():
        with cell.lock(wait=True):
            return _merge(plan, cell, encoder, scores, meter, t1, truncated_before)

    status, final = run_on_main(merge, world)
    return CellOutcome(cell.path, status, final, rank=world.rank)


def _merge(plan: CellPlan, cell: CellDir, encoder, scores: dict, meter, t1: float, truncated_before: int):
    """Under the cell lock: this shard's scores into ``scores.json``; when every task is scored, the cell is
    recorded done exactly as an unsharded cell (cell._record). Returns ``(status, scores)``."""
    from embedgrid.evaluate.run import suite_categories
    from embedgrid.grid.cell import _make_logger, _record, parameter_counts

    record = cell.read_record() or {}
    merged = {**(cell.scores() or {}), **scores}
    cell.write_scores(merged)
    missing = cell.unscored(plan)
    if missing:
        cell.record(plan, cost=meter.record(record.get("cost")))
        log.info("shard scored %s; %d tasks still with other shards: %s", ", ".join(scores), len(missing),
                 ", ".join(missing))
        return record.get("status", EVAL_PENDING), None
    evaluation = plan.eval
    suite = {task: merged[task] for task in evaluation.all_tasks}
    summary = {"train": record.get("train"), "timings": dict(record.get("timings") or {}),
               "category_scores": suite_categories(suite, evaluation),
               **parameter_counts(encoder),
               "error": None, "traceback": None}  # a failed shard's, now that its tasks are scored
    started = float(record.get("started_at") or time.time())
    final = _record(plan, cell, encoder, suite, summary, _make_logger(plan, cell), started, meter, record.get("cost"),
                    t1, truncated_before)
    return DONE, final


def _record_failure(plan: CellPlan, cell: CellDir, names: list[str], error: BaseException, meter) -> None:
    """A shard that failed leaves the cell unfinished (failed; partial when stopped), naming its tasks; a cell
    another shard has finished meanwhile is left as it is."""
    status = PARTIAL if isinstance(error, (Preempted, KeyboardInterrupt, SystemExit)) else FAILED
    try:
        with cell.lock(wait=True):
            record = cell.read_record() or {}
            if record.get("status") == DONE:
                return
            cost = {"cost": meter.record(record.get("cost"))} if meter is not None else {}
            cell.record(plan, status=status, error=f"evaluation shard {', '.join(names)}: {type(error).__name__}: "
                        f"{error}", traceback=traceback.format_exc(), **cost)
    except Exception as record_error:  # noqa: BLE001 - keep the original error
        log.error("could not record %s in %s (%s: %s)", status, cell.record_file, type(record_error).__name__,
                  record_error)
