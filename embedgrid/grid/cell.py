"""One grid cell, start to finish: build → train (resumable) → save → evaluate (resumable) → record.

The composed config is resolved once, at the top of ``run``, into the cell's plan (embedgrid.grid.plan); everything
below takes the plan or its parts. The cell directory (its files, states, lock and guards) is
embedgrid.grid.celldir.CellDir. A finished cell is skipped; a partial one resumes; a directory holding another
config, another cell's model or somebody else's files is never written to.
"""
from __future__ import annotations

import logging
import time
import traceback
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from embedgrid.grid.celldir import (CELL_FILE, CHECKPOINT_DIR, DONE, EVAL_PENDING, FAILED, LOCK_FILE,  # noqa: F401
                               MODEL_DIR, NEW, PARTIAL, RUNNING, SCORES_FILE, CellDir)
from embedgrid.cost import CostMeter, summary as cost_summary
from embedgrid.grid.shardplan import defer_evaluation, deferred_tasks
from embedgrid.errors import ConfigError, Preempted
from embedgrid.grid.plan import CellPlan, resolve_plan

log = logging.getLogger(__name__)


@dataclass
class CellOutcome:
    cell_dir: Path
    status: str
    scores: dict | None = None
    error: str | None = None
    skipped: bool = False
    rank: int = 0  # under several processes every rank returns the outcome; rank 0 is the one to report
    shards: list | None = None  # eval_pending: the task names of each evaluation shard job (eval.shards)


def cell_state(cell_dir: str | Path, cfg: DictConfig | None = None) -> str:
    """done | partial | failed | new for the requested cell (done only if every requested task is scored)."""
    return CellDir(cell_dir).state(None if cfg is None else resolve_plan(cfg))


def run(cfg: DictConfig, cell_dir: str | Path, defer_eval: bool = False) -> CellOutcome:
    """Run (or skip, or resume) the cell described by ``cfg`` in ``cell_dir``. Failures are recorded, then raised.

    Launched with several processes (torchrun, or several SLURM tasks) every rank calls this: all ranks train,
    data parallel with negatives spanning ranks, while rank 0 alone holds the lock, writes ``cell.json``, saves
    the model and evaluates; every rank returns the same scores. ``defer_eval`` (a sweep, which runs the shard
    jobs): with ``eval.shards`` > 1 the cell ends ``eval_pending`` after training (embedgrid.grid.shard).
    """
    from embedgrid.train.distributed import init_from_env, run_on_main

    plan = resolve_plan(cfg)  # the only read of the composed config: below here, the plan and its parts
    world = init_from_env()
    cell = CellDir(cell_dir)
    with ExitStack() as held:
        def claim() -> dict:
            cell.check_is_cell_dir()  # before the lock file: a foreign directory gets nothing written
            if cell.read_only:
                return read_only_plan(plan, cell)
            held.enter_context(cell.lock())
            if cell.shares_model(plan):  # one of several evaluations of one trained model: train it once
                held.enter_context(cell.model_family_lock(plan))
                sibling = cell.adopt_model(plan)
                if sibling is not None:
                    log.info("adopted the trained model of %s; evaluation only", sibling.name)
            claimed = cell.claim(plan)
            if claimed["state"] == DONE:
                log.info("cell %s is done; skipping", cell.path)
            return claimed

        claimed = run_on_main(claim, world)
        if claimed["state"] == DONE:
            return CellOutcome(cell.path, DONE, claimed["scores"], skipped=True, rank=world.rank)
        return _run_claimed(plan, cell, claimed, world, defer_eval)


def read_only_plan(plan: CellPlan, cell: CellDir) -> dict:
    """A cell directory that cannot be written: a done cell is skipped (nothing to write); anything else stops
    here, naming the directory, before any work."""
    import errno

    from embedgrid.errors import WriteFailed

    cell.check_intact()
    if cell.state(plan) == DONE:
        return {"state": DONE, "scores": cell.scores()}
    raise WriteFailed(errno.EROFS, f"{cell.path} cannot be written (read-only file system?) and the cell is not "
                      "done; run it where its directory is writable", str(cell.path))


def _run_claimed(plan: CellPlan, cell: CellDir, claimed: dict, world, defer_eval: bool = False) -> CellOutcome:
    from embedgrid.logger import NullLogger

    started, logger, meter = claimed["started"], None, None
    earlier_cost = (cell.read_record() or {}).get("cost") if world.is_main else None  # a resumed cell's attempts
    try:
        device = _setup_runtime(plan)
        meter = CostMeter(device, world.size)
        pending = deferred_tasks(plan, cell, world) if defer_eval else []  # for evaluation shard jobs
        if pending and claimed["trained"]:
            return _defer(plan, cell, pending, meter, earlier_cost, started, world)
        logger = _make_logger(plan, cell) if world.is_main else NullLogger()
        encoder, summary = _trained_encoder(plan, cell, device, logger, world, trained=claimed["trained"], meter=meter)
        if pending:
            logger.finish(0)
            return _defer(plan, cell, pending, meter, earlier_cost, started, world, timings=summary["timings"])
        from embedgrid.train.signals import StopNow

        with StopNow():  # SIGTERM while evaluating: Preempted, so the cell is recorded partial, not left running
            scores = _evaluate_and_record(plan, cell, encoder, summary, logger, started, meter=meter,
                                          earlier_cost=earlier_cost, world=world)
        return CellOutcome(cell.path, DONE, scores, rank=world.rank)
    except BaseException as error:
        from embedgrid.train.signals import hand_over

        if world.is_main:  # SystemExit: a signal handler (submitit's) ended the job; the next launch resumes
            status = PARTIAL if isinstance(error, (Preempted, KeyboardInterrupt, SystemExit)) else FAILED
            try:
                cost = {"cost": meter.record(earlier_cost)} if meter is not None else {}
                cell.record(plan, status=status, error=f"{type(error).__name__}: {error}",
                            traceback=traceback.format_exc(), seconds=round(time.time() - started, 2), **cost)
            except Exception as record_error:  # noqa: BLE001 - e.g. the disk is full: keep the original error
                log.error("could not record %s in %s (%s: %s)", status, cell.path / CELL_FILE,
                          type(record_error).__name__, record_error)
        if logger is not None:
            logger.finish(1)
        hand_over(error)  # SIGUSR2 under submitit: its requeue, now that cell.json says partial
        raise


def _defer(plan: CellPlan, cell: CellDir, pending: list[str], meter, earlier_cost, started: float, world,
           **fields) -> CellOutcome:
    """Trained and saved: the evaluation goes to shard jobs (their plan recorded; cell.json says eval_pending)."""
    shards = defer_evaluation(plan, cell, pending, cost=meter.record(earlier_cost),
                              seconds=round(time.time() - started, 2), **fields)
    return CellOutcome(cell.path, EVAL_PENDING, shards=shards, rank=world.rank)


def _setup_runtime(plan: CellPlan) -> str:
    import torch
    from transformers import set_seed

    runtime = plan.runtime
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    set_seed(runtime.seed)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if runtime.device == "auto" else runtime.device
    if plan.eval.compile is True:  # before training, not when evaluation starts after it (auto: never fails)
        from embedgrid.model.encoder import check_cpu_compiler

        check_cpu_compiler(device)
    from embedgrid.evaluate.suite import require_data

    require_data(plan.eval)  # offline: hub datasets the evaluation would need, named before training
    return device


def _make_logger(plan: CellPlan, cell: CellDir):
    from hydra.utils import instantiate

    if plan.runtime.logger["_target_"].endswith("NullLogger"):
        return instantiate(plan.runtime.logger)
    make = instantiate(plan.runtime.logger, _partial_=True)  # called with plain dicts, not config nodes
    # a top-level `design` beside the nested config: the W&B UI groups a sweep by design in one click
    run_config = {"design": plan.identity.design_label, **plan.saved_config()}
    return make(run_id=wandb_run_id(plan), name=plan.identity.name, group=plan.runtime.grid, run_config=run_config,
                directory=str(cell.path))


def wandb_run_id(plan: CellPlan) -> str:
    """Stable per (grid, cell): a resumed or requeued cell logs into the same W&B run."""
    import hashlib

    return hashlib.sha256(f"{plan.runtime.grid}/{plan.identity.name}".encode()).hexdigest()[:24]


def _trained_encoder(plan: CellPlan, cell: CellDir, device: str, logger, world, trained: bool, meter):
    """The cell's encoder after training (built and trained, resumed, or loaded from ``model/``) + a summary.

    Every rank trains; rank 0 saves the model. When ``model/`` already exists (its identity was checked by the
    claim) only rank 0 needs the encoder, rebuilt from the plan's spec with the saved weights.
    """
    from hydra.utils import instantiate

    from embedgrid.model.encoder import build_encoder, load_encoder
    from embedgrid.train.distributed import all_sum
    from embedgrid.train.loop import fit

    summary, t0 = {}, time.perf_counter()
    spec, train = plan.encoder, plan.train
    if trained:
        log.info("trained model found in %s; evaluation only", cell.model_dir)
        with meter.phase("build"):
            encoder = load_encoder(cell.model_dir, device=device, spec=spec)  # every rank evaluates
        summary["train"] = (cell.read_record() or {}).get("train")
    else:
        log.info("building %s with %s pooling, %s attention", plan.identity.model, plan.identity.pooling,
                 plan.identity.attention)
        with meter.phase("build"):
            encoder = build_encoder(spec, device=device).to(device)  # attention proven on the device
        meter.watch(encoder)
        _check_dimensions(plan.eval.truncate_dim, encoder.dim)
        if train.max_steps > 0:
            rows = instantiate(plan.data.loader)
            log.info("training on %d rows (%s) for %d steps", len(rows), plan.data.name, train.max_steps)
            from embedgrid.train.signals import StopSignals

            with StopSignals() as stop, meter.phase("train", dtype=_train_dtype(plan.encoder.dtype, train, device),
                                                    reduce=lambda value: all_sum(value, world)):
                # SIGTERM/SIGUSR1: checkpoint, then Preempted (cell stays partial)
                summary["train"] = fit(encoder, rows, train, seed=plan.runtime.seed, checkpoint_dir=cell.checkpoint_dir,
                                       logger=logger, should_stop=stop)
            summary["train"]["truncated_texts"] = int(all_sum(encoder.truncated, world))
            if world.is_main:
                cell.record(plan, train=summary["train"])
        else:
            summary["train"] = {"steps": 0, "note": "zero-shot: untrained backbone with this pooling"}
        if world.is_main:
            with meter.phase("save"):
                save_model(plan, cell, encoder)
    summary["timings"] = {"build_and_train_s": round(time.perf_counter() - t0, 2)}
    return encoder, summary


def save_model(plan: CellPlan, cell: CellDir, encoder) -> None:
    """``model/`` written whole or not at all (a temp directory renamed), with the integrity of each file."""
    from embedgrid.io import atomic_dir, move_aside, write_errors

    def write(tmp: Path) -> None:
        with write_errors(cell.model_dir):
            encoder.save(tmp)
        cell.write_model_identity(plan, tmp)

    if cell.model_dir.exists():  # an unfinished model (no encoder.json): kept aside, never mixed in
        log.warning("%s holds no complete model; moved to %s", cell.model_dir, move_aside(cell.model_dir))
    atomic_dir(cell.model_dir, write)


def _check_dimensions(truncate: int | None, dim: int) -> None:
    """eval.truncate_dim against the encoder's output size, before training rather than after it."""
    if truncate is not None and not 1 <= truncate <= dim:
        raise ConfigError(f"eval.truncate_dim={truncate} is outside 1..{dim}, the encoder's dimension; choose a "
                          "prefix length it has, or null")


def _train_dtype(model_dtype: str, train, device: str) -> str:
    """The dtype training's matmuls run in (bf16 autocast, else the model's), for the device's peak."""
    from embedgrid.precision import bf16_active

    return "bfloat16" if bf16_active(train.bf16, device) else str(model_dtype)


def _evaluate_and_record(plan: CellPlan, cell: CellDir, encoder, summary: dict, logger, started: float, *,
                         meter, earlier_cost: dict | None, world) -> dict:
    """Every rank evaluates (each encode call's texts split over the ranks); rank 0 writes scores.json and the
    finished cell.json; every rank returns the scores."""
    from embedgrid.train.distributed import all_sum, run_on_main

    summary.update(parameter_counts(encoder))
    t1, truncated_before = time.perf_counter(), encoder.truncated
    meter.watch(encoder)  # a loaded encoder (evaluation only) is watched from here
    with meter.phase("evaluate", dtype=str(plan.encoder.dtype), reduce=lambda value: all_sum(value, world)):
        scores, summary["category_scores"] = evaluate_cell(plan, encoder, cell, world)
    return run_on_main(lambda: _record(plan, cell, encoder, scores, summary, logger, started, meter, earlier_cost,
                                       t1, truncated_before), world)


def parameter_counts(encoder) -> dict:
    """The trained parameters a cell records: the pooling head's and the LoRA adapter's."""
    return {"pooling_parameters": encoder.pooling.num_parameters,
            "lora_parameters": sum(p.numel() for n, p in encoder.backbone.named_parameters() if "lora_" in n)}


def evaluate_cell(plan: CellPlan, encoder, cell: CellDir, world) -> tuple[dict, dict]:
    """``plan.eval`` scored into the cell's mteb cache under the cell's mteb name and revision: (scores,
    category scores). A shard job passes a plan whose ``eval`` holds its own tasks."""
    from embedgrid.evaluate.meta import cell_model_meta
    from embedgrid.evaluate.run import evaluate_encoder

    meta = cell_model_meta(encoder, card=plan.card, data_name=plan.data.name, loader=plan.data.loader,
                           trains=plan.trains)
    return evaluate_encoder(encoder, _with_domains(plan), cell.mteb_dir, name=f"embedgrid/{plan.identity.name}",
                            revision=plan.identity.config_hash, meta=meta, world=world)


def _record(plan: CellPlan, cell: CellDir, encoder, scores: dict, summary: dict, logger, started: float, meter,
            earlier_cost, t1: float, truncated_before: int) -> dict:
    summary["timings"]["eval_s"] = round(time.perf_counter() - t1, 2)
    if encoder.truncated > truncated_before:
        log.info("evaluation: %d texts truncated to max_length=%d (per task in launch.log)",
                 encoder.truncated - truncated_before, encoder.spec.max_length)
    cell.write_category_scores(summary["category_scores"])
    cell.write_scores(scores)
    summary["cost"] = meter.record(earlier_cost)
    logger.summary({**wandb_summary(scores, summary["category_scores"]), **cost_summary(summary["cost"])})
    cell.record(plan, status=DONE, finished_at=time.time(), seconds=round(time.time() - started, 2), **summary)
    logger.finish(0)
    return scores


def _with_domains(plan: CellPlan):
    """The plan's evaluation, custom tasks left at ``in_domain: auto`` marked by their overlap with this cell's
    training rows."""
    evaluation = plan.eval
    if not any(node.get("in_domain", "auto") == "auto" for node in evaluation.custom.values()):
        return evaluation
    from hydra.utils import instantiate

    from embedgrid.evaluate.leakage import mark_in_domain

    rows = instantiate(plan.data.loader) if plan.trains else []
    return mark_in_domain(evaluation, rows)


def wandb_summary(scores: dict, category_scores: dict) -> dict:
    """Per-task main scores, ``category/<Category>`` means of the out-of-domain tasks, ``category/average`` (of
    those category means), ``category/average_tasks``, and ``category/<Category> (in-domain)`` apart: the numbers
    of the console table and of ``category_scores.json``."""
    summary = {f"eval/{task}": entry["main_score"] for task, entry in scores.items()}
    summary.update({f"category/{name}": mean for name, mean in (category_scores.get("means") or {}).items()})
    if category_scores.get("average_of_category_means") is not None:
        summary["category/average"] = category_scores["average_of_category_means"]
    if category_scores.get("mean_of_tasks") is not None:
        summary["category/average_tasks"] = category_scores["mean_of_tasks"]
    own = category_scores.get("in_domain") or {}
    summary.update({f"category/{name} (in-domain)": mean for name, mean in (own.get("means") or {}).items()})
    return summary
