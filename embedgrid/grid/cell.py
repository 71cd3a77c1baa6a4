"""One grid cell, start to finish: build → train (resumable) → save → evaluate (resumable) → record.

The cell directory (its files, states, lock and guards) is embedgrid.grid.celldir.CellDir. A finished cell is
skipped; a partial one resumes; a directory holding another config, another cell's model or somebody else's
files is never written to.
"""
from __future__ import annotations

import logging
import time
import traceback
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from embedgrid.grid.cellid import cell_name, config_hash, model_commit
from embedgrid.grid.celldir import (CELL_FILE, CHECKPOINT_DIR, DONE, EVAL_PENDING, FAILED, LOCK_FILE,  # noqa: F401
                               MODEL_DIR, NEW, PARTIAL, RUNNING, SCORES_FILE, CellDir)
from embedgrid.cost import CostMeter, summary as cost_summary
from embedgrid.grid.shardplan import defer_evaluation, deferred_tasks
from embedgrid.errors import ConfigError, Preempted

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
    return CellDir(cell_dir).state(cfg)


def encoder_spec(cfg: DictConfig):
    """The cell's EncoderSpec, from the typed model, pooling, attention, lora and train groups."""
    from embedgrid.grid.schema import train_config
    from embedgrid.model.spec import EncoderSpec, LoraSpec

    model = cfg.model
    lora = LoraSpec(**OmegaConf.to_container(cfg.lora, resolve=True))
    if model.lora_target_modules:  # the model's own layer names (BERT has no q_proj ...)
        lora = replace(lora, target_modules=list(model.lora_target_modules))
    return EncoderSpec(
        checkpoint=OmegaConf.to_container(model.checkpoint, resolve=True) if OmegaConf.is_config(model.checkpoint)
        else model.checkpoint,
        pooling=OmegaConf.to_container(cfg.pooling.head, resolve=True), attention=cfg.attention.name,
        revision=model_commit(cfg) or model.revision, dtype=model.dtype, attn_implementation=model.attn_implementation,
        trust_remote_code=model.trust_remote_code, max_length=train_config(cfg).max_length or model.max_length,
        pool_instruction=cfg.instruction_in_pooling, append_eos=cfg.append_eos,
        instruction_template=cfg.instruction_template, instruction_join=cfg.instruction_join, lora=lora,
        name=cell_name(cfg))


def run(cfg: DictConfig, cell_dir: str | Path, defer_eval: bool = False) -> CellOutcome:
    """Run (or skip, or resume) the cell described by ``cfg`` in ``cell_dir``. Failures are recorded, then raised.

    Launched with several processes (torchrun, or several SLURM tasks) every rank calls this: all ranks train,
    data parallel with negatives spanning ranks, while rank 0 alone holds the lock, writes ``cell.json``, saves
    the model and evaluates; every rank returns the same scores. ``defer_eval`` (a sweep, which runs the shard
    jobs): with ``eval.shards`` > 1 the cell ends ``eval_pending`` after training (embedgrid.grid.shard).
    """
    from embedgrid.train.distributed import init_from_env, run_on_main

    world = init_from_env()
    cell = CellDir(cell_dir)
    with ExitStack() as held:
        def claim() -> dict:
            cell.check_is_cell_dir()  # before the lock file: a foreign directory gets nothing written
            if cell.read_only:
                return read_only_plan(cfg, cell)
            held.enter_context(cell.lock())
            if cell.shares_model(cfg):  # one of several evaluations of one trained model: train it once
                held.enter_context(cell.model_family_lock(cfg))
                sibling = cell.adopt_model(cfg)
                if sibling is not None:
                    log.info("adopted the trained model of %s; evaluation only", sibling.name)
            plan = cell.claim(cfg)
            if plan["state"] == DONE:
                log.info("cell %s is done; skipping", cell.path)
            return plan

        plan = run_on_main(claim, world)
        if plan["state"] == DONE:
            return CellOutcome(cell.path, DONE, plan["scores"], skipped=True, rank=world.rank)
        return _run_claimed(cfg, cell, plan, world, defer_eval)


def read_only_plan(cfg: DictConfig, cell: CellDir) -> dict:
    """A cell directory that cannot be written: a done cell is skipped (nothing to write); anything else stops
    here, naming the directory, before any work."""
    import errno

    from embedgrid.errors import WriteFailed

    cell.check_intact()
    if cell.state(cfg) == DONE:
        return {"state": DONE, "scores": cell.scores()}
    raise WriteFailed(errno.EROFS, f"{cell.path} cannot be written (read-only file system?) and the cell is not "
                      "done; run it where its directory is writable", str(cell.path))


def _run_claimed(cfg: DictConfig, cell: CellDir, plan: dict, world, defer_eval: bool = False) -> CellOutcome:
    from embedgrid.logger import NullLogger

    started, logger, meter = plan["started"], None, None
    earlier_cost = (cell.read_record() or {}).get("cost") if world.is_main else None  # a resumed cell's attempts
    try:
        device = _setup_runtime(cfg)
        meter = CostMeter(device, world.size)
        pending = deferred_tasks(cfg, cell, world) if defer_eval else []  # for evaluation shard jobs
        if pending and plan["trained"]:
            return _defer(cfg, cell, pending, meter, earlier_cost, started, world)
        logger = _make_logger(cfg, cell) if world.is_main else NullLogger()
        encoder, summary = _trained_encoder(cfg, cell, device, logger, world, trained=plan["trained"], meter=meter)
        if pending:
            logger.finish(0)
            return _defer(cfg, cell, pending, meter, earlier_cost, started, world, timings=summary["timings"])
        from embedgrid.train.signals import StopNow

        with StopNow():  # SIGTERM while evaluating: Preempted, so the cell is recorded partial, not left running
            scores = _evaluate_and_record(cfg, cell, encoder, summary, logger, started, meter=meter,
                                          earlier_cost=earlier_cost, world=world)
        return CellOutcome(cell.path, DONE, scores, rank=world.rank)
    except BaseException as error:
        from embedgrid.train.signals import hand_over

        if world.is_main:  # SystemExit: a signal handler (submitit's) ended the job; the next launch resumes
            status = PARTIAL if isinstance(error, (Preempted, KeyboardInterrupt, SystemExit)) else FAILED
            try:
                cost = {"cost": meter.record(earlier_cost)} if meter is not None else {}
                cell.record(cfg, status=status, error=f"{type(error).__name__}: {error}",
                            traceback=traceback.format_exc(), seconds=round(time.time() - started, 2), **cost)
            except Exception as record_error:  # noqa: BLE001 - e.g. the disk is full: keep the original error
                log.error("could not record %s in %s (%s: %s)", status, cell.path / CELL_FILE,
                          type(record_error).__name__, record_error)
        if logger is not None:
            logger.finish(1)
        hand_over(error)  # SIGUSR2 under submitit: its requeue, now that cell.json says partial
        raise


def _defer(cfg: DictConfig, cell: CellDir, pending: list[str], meter, earlier_cost, started: float, world,
           **fields) -> CellOutcome:
    """Trained and saved: the evaluation goes to shard jobs (their plan recorded; cell.json says eval_pending)."""
    shards = defer_evaluation(cfg, cell, pending, cost=meter.record(earlier_cost),
                              seconds=round(time.time() - started, 2), **fields)
    return CellOutcome(cell.path, EVAL_PENDING, shards=shards, rank=world.rank)


def _setup_runtime(cfg: DictConfig) -> str:
    import torch
    from transformers import set_seed

    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    set_seed(int(cfg.seed))
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    if cfg.eval.compile is True:  # before training, not when evaluation starts after it (auto: never fails)
        from embedgrid.model.encoder import check_cpu_compiler

        check_cpu_compiler(device)
    from embedgrid.evaluate.config import eval_config
    from embedgrid.evaluate.suite import require_data

    require_data(eval_config(cfg))  # offline: hub datasets the evaluation would need, named before training
    return device


def _make_logger(cfg: DictConfig, cell: CellDir):
    from hydra.utils import instantiate

    if cfg.logger._target_.endswith("NullLogger"):
        return instantiate(cfg.logger)
    from embedgrid.grid.designs import design_label

    make = instantiate(cfg.logger, _partial_=True)  # called with plain dicts, not config nodes
    # a top-level `design` beside the nested config: the W&B UI groups a sweep by design in one click
    run_config = {"design": design_label(cfg.pooling.name, cfg.attention.name),
                  **OmegaConf.to_container(cfg, resolve=True)}
    return make(run_id=wandb_run_id(cfg), name=cell_name(cfg), group=cfg.grid, run_config=run_config,
                directory=str(cell.path))


def wandb_run_id(cfg: DictConfig) -> str:
    """Stable per (grid, cell): a resumed or requeued cell logs into the same W&B run."""
    import hashlib

    return hashlib.sha256(f"{cfg.grid}/{cell_name(cfg)}".encode()).hexdigest()[:24]


def _trained_encoder(cfg: DictConfig, cell: CellDir, device: str, logger, world, trained: bool, meter):
    """The cell's encoder after training (built and trained, resumed, or loaded from ``model/``) + a summary.

    Every rank trains; rank 0 saves the model. When ``model/`` already exists (its identity was checked by the
    claim) only rank 0 needs the encoder, rebuilt from this cell's config with the saved weights.
    """
    from hydra.utils import instantiate

    from embedgrid.model.encoder import build_encoder, load_encoder
    from embedgrid.grid.schema import train_config
    from embedgrid.train.distributed import all_sum
    from embedgrid.train.loop import fit

    summary, t0 = {}, time.perf_counter()
    spec = encoder_spec(cfg)
    if trained:
        log.info("trained model found in %s; evaluation only", cell.model_dir)
        with meter.phase("build"):
            encoder = load_encoder(cell.model_dir, device=device, spec=spec)  # every rank evaluates
        summary["train"] = (cell.read_record() or {}).get("train")
    else:
        log.info("building %s with %s pooling, %s attention", cfg.model.name, cfg.pooling.name, cfg.attention.name)
        with meter.phase("build"):
            encoder = build_encoder(spec, device=device).to(device)  # attention proven on the device
        meter.watch(encoder)
        _check_dimensions(cfg, encoder.dim)
        train = train_config(cfg)
        if train.max_steps > 0:
            rows = instantiate(cfg.data.loader)
            log.info("training on %d rows (%s) for %d steps", len(rows), cfg.data.name, train.max_steps)
            from embedgrid.train.signals import StopSignals

            with StopSignals() as stop, meter.phase("train", dtype=_train_dtype(cfg, train, device),
                                                    reduce=lambda value: all_sum(value, world)):
                # SIGTERM/SIGUSR1: checkpoint, then Preempted (cell stays partial)
                summary["train"] = fit(encoder, rows, train, seed=int(cfg.seed), checkpoint_dir=cell.checkpoint_dir,
                                       logger=logger, should_stop=stop)
            summary["train"]["truncated_texts"] = int(all_sum(encoder.truncated, world))
            if world.is_main:
                cell.record(cfg, train=summary["train"])
        else:
            summary["train"] = {"steps": 0, "note": "zero-shot: untrained backbone with this pooling"}
        if world.is_main:
            with meter.phase("save"):
                save_model(cfg, cell, encoder)
    summary["timings"] = {"build_and_train_s": round(time.perf_counter() - t0, 2)}
    return encoder, summary


def save_model(cfg: DictConfig, cell: CellDir, encoder) -> None:
    """``model/`` written whole or not at all (a temp directory renamed), with the integrity of each file."""
    from embedgrid.io import atomic_dir, move_aside, write_errors

    def write(tmp: Path) -> None:
        with write_errors(cell.model_dir):
            encoder.save(tmp)
        cell.write_model_identity(cfg, tmp)

    if cell.model_dir.exists():  # an unfinished model (no encoder.json): kept aside, never mixed in
        log.warning("%s holds no complete model; moved to %s", cell.model_dir, move_aside(cell.model_dir))
    atomic_dir(cell.model_dir, write)


def _check_dimensions(cfg: DictConfig, dim: int) -> None:
    """eval.truncate_dim against the encoder's output size, before training rather than after it."""
    truncate = cfg.eval.get("truncate_dim")
    if truncate is not None and not 1 <= truncate <= dim:
        raise ConfigError(f"eval.truncate_dim={truncate} is outside 1..{dim}, the encoder's dimension; choose a "
                          "prefix length it has, or null")


def _train_dtype(cfg: DictConfig, train, device: str) -> str:
    """The dtype training's matmuls run in (bf16 autocast, else the model's), for the device's peak."""
    from embedgrid.precision import bf16_active

    return "bfloat16" if bf16_active(train.bf16, device) else str(cfg.model.dtype)


def _evaluate_and_record(cfg: DictConfig, cell: CellDir, encoder, summary: dict, logger, started: float, *,
                         meter, earlier_cost: dict | None, world) -> dict:
    """Every rank evaluates (each encode call's texts split over the ranks); rank 0 writes scores.json and the
    finished cell.json; every rank returns the scores."""
    from embedgrid.train.distributed import all_sum, run_on_main

    from embedgrid.evaluate.config import eval_config
    from embedgrid.evaluate.meta import cell_model_meta
    from embedgrid.evaluate.run import evaluate_encoder

    summary["pooling_parameters"] = encoder.pooling.num_parameters
    summary["lora_parameters"] = sum(p.numel() for n, p in encoder.backbone.named_parameters() if "lora_" in n)
    t1, truncated_before = time.perf_counter(), encoder.truncated
    meter.watch(encoder)  # a loaded encoder (evaluation only) is watched from here
    with meter.phase("evaluate", dtype=str(cfg.model.dtype), reduce=lambda value: all_sum(value, world)):
        scores, summary["category_scores"] = evaluate_encoder(
            encoder, _with_domains(cfg, eval_config(cfg)), cell.mteb_dir, name=f"embedgrid/{cell_name(cfg)}",
            revision=config_hash(cfg), meta=cell_model_meta(cfg, encoder), world=world)
    return run_on_main(lambda: _record(cfg, cell, encoder, scores, summary, logger, started, meter, earlier_cost,
                                       t1, truncated_before), world)


def _record(cfg: DictConfig, cell: CellDir, encoder, scores: dict, summary: dict, logger, started: float, meter,
            earlier_cost, t1: float, truncated_before: int) -> dict:
    summary["timings"]["eval_s"] = round(time.perf_counter() - t1, 2)
    if encoder.truncated > truncated_before:
        log.info("evaluation: %d texts truncated to max_length=%d (per task in launch.log)",
                 encoder.truncated - truncated_before, encoder.spec.max_length)
    cell.write_category_scores(summary["category_scores"])
    cell.write_scores(scores)
    summary["cost"] = meter.record(earlier_cost)
    logger.summary({**wandb_summary(scores, summary["category_scores"]), **cost_summary(summary["cost"])})
    cell.record(cfg, status=DONE, finished_at=time.time(), seconds=round(time.time() - started, 2), **summary)
    logger.finish(0)
    return scores


def _with_domains(cfg: DictConfig, evaluation):
    """Custom tasks left at ``in_domain: auto`` marked by their overlap with this cell's training rows."""
    if not any(node.get("in_domain", "auto") == "auto" for node in evaluation.custom.values()):
        return evaluation
    from hydra.utils import instantiate

    from embedgrid.evaluate.leakage import mark_in_domain
    from embedgrid.grid.schema import train_config

    rows = instantiate(cfg.data.loader) if train_config(cfg).max_steps > 0 else []
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
