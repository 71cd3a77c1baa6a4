"""One grid cell, start to finish: build → train (resumable) → save → evaluate (resumable) → record.

The cell directory is the unit of work and of results:
  cell.json     config (secrets redacted), status, timings, versions, pooling parameter count, errors
  scores.json   {task: {category, main_score, ...}}
  model/        encoder.json + adapter/ (LoRA, safetensors) + pooling.safetensors  → embedgrid.load_encoder
  checkpoints/  training state for resume;  mteb/  mteb's own result files
A finished cell is skipped; a partial one resumes; a directory holding another config is never overwritten.
"""
from __future__ import annotations

import logging
import os
import time
import traceback
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from embedgrid.cellid import cell_name, config_hash
from embedgrid.io import read_json, write_json
from embedgrid.secrets import redact

log = logging.getLogger(__name__)

CELL_FILE, SCORES_FILE, MODEL_DIR, CHECKPOINT_DIR = "cell.json", "scores.json", "model", "checkpoints"
DONE, PARTIAL, NEW, FAILED, RUNNING = "done", "partial", "new", "failed", "running"


class CellConflict(RuntimeError):
    """The cell directory holds results of a different configuration."""


class CellBusy(RuntimeError):
    """Another process is running this cell (two sweeps over one directory, or a relaunch while one runs)."""


LOCK_FILE = ".lock"


@contextmanager
def cell_lock(cell_dir: Path):
    """Exclusive lock on the cell for the lifetime of a run; released by the kernel if the process dies."""
    import fcntl

    with open(cell_dir / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise CellBusy(f"{cell_dir} is being run by another process (pid {holder}); wait for it or stop it "
                           "before launching this cell again") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield


@dataclass
class CellOutcome:
    cell_dir: Path
    status: str
    scores: dict | None = None
    error: str | None = None
    skipped: bool = False
    rank: int = 0  # under several processes every rank returns the outcome; rank 0 is the one to report


def cell_state(cell_dir: Path, cfg: DictConfig | None = None) -> str:
    """done | partial | failed | new for the requested cell (done only if every requested task is scored)."""
    record = read_json(Path(cell_dir) / CELL_FILE)
    if record is None:
        return NEW
    if record.get("status") == DONE and cfg is not None:
        from embedgrid.evaluate.run import scores_cover

        scores = read_json(Path(cell_dir) / SCORES_FILE, {}) or {}
        if not scores_cover(scores, OmegaConf.to_container(cfg.eval, resolve=True)):  # tasks and subset sizes
            return PARTIAL
    if record.get("status") == DONE:
        return DONE
    return FAILED if record.get("status") == FAILED else PARTIAL


def encoder_spec(cfg: DictConfig):
    from embedgrid.spec import EncoderSpec, LoraSpec

    model = OmegaConf.to_container(cfg.model, resolve=True)
    return EncoderSpec(
        checkpoint=model["checkpoint"], pooling=OmegaConf.to_container(cfg.pooling.head, resolve=True),
        attention=cfg.attention.name, revision=model.get("revision"), dtype=model.get("dtype", "float32"),
        attn_implementation=model.get("attn_implementation", "sdpa"),
        trust_remote_code=bool(model.get("trust_remote_code", False)), max_length=int(model["max_length"]),
        pool_instruction=bool(cfg.instruction_in_pooling), append_eos=bool(cfg.append_eos),
        lora=LoraSpec(**{**OmegaConf.to_container(cfg.lora, resolve=True),  # model-specific layer names (BERT)
                         **({"target_modules": model["lora_target_modules"]} if model.get("lora_target_modules")
                            else {})}), name=cell_name(cfg),
    )


def _setup_runtime(cfg: DictConfig):
    import torch
    from transformers import set_seed

    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    set_seed(int(cfg.seed))
    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.device


def _record(cell_dir: Path, cfg: DictConfig, **fields) -> dict:
    from embedgrid.versions import package_versions

    record = read_json(cell_dir / CELL_FILE, {}) or {}
    record.update({
        "cell": cell_name(cfg), "config_hash": config_hash(cfg),
        "design": {"model": cfg.model.name, "pooling": cfg.pooling.name, "attention": cfg.attention.name,
                   "seed": int(cfg.seed)},
        "grid": cfg.grid,
        "config": redact(OmegaConf.to_container(cfg, resolve=True)),
        "versions": package_versions(),
    })
    record.update(fields)
    write_json(cell_dir / CELL_FILE, record)
    return record


def _check_same_config(cell_dir: Path, cfg: DictConfig) -> None:
    record = read_json(cell_dir / CELL_FILE)
    if record and record.get("config_hash") not in (None, config_hash(cfg)):
        raise CellConflict(f"{cell_dir} holds results of config {record['config_hash']}, not "
                           f"{config_hash(cfg)}; choose another hydra.run.dir / hydra.sweep.dir")


def run(cfg: DictConfig, cell_dir: str | Path) -> CellOutcome:
    """Run (or skip, or resume) the cell described by ``cfg`` in ``cell_dir``. Failures are recorded, then raised.

    Launched with several processes (torchrun, or several SLURM tasks) every rank calls this: all ranks train,
    data parallel with negatives spanning ranks, while rank 0 alone holds the lock, writes ``cell.json``, saves
    the model and evaluates; every rank returns the same scores.
    """
    from embedgrid.train.distributed import init_from_env, run_on_main

    world = init_from_env()
    cell_dir = Path(cell_dir)
    with ExitStack() as held:
        def claim() -> dict:
            cell_dir.mkdir(parents=True, exist_ok=True)
            held.enter_context(cell_lock(cell_dir))
            return _claim(cfg, cell_dir)

        plan = run_on_main(claim, world)
        if plan["state"] == DONE:
            return CellOutcome(cell_dir, DONE, plan["scores"], skipped=True, rank=world.rank)
        return _run_claimed(cfg, cell_dir, plan, world)


def _claim(cfg: DictConfig, cell_dir: Path) -> dict:
    """Rank 0, under the lock: refuse another config's directory, skip a done cell, else mark it running."""
    from embedgrid.encoder import SPEC_FILE

    _check_same_config(cell_dir, cfg)
    state = cell_state(cell_dir, cfg)
    if state == DONE:
        log.info("cell %s is done; skipping", cell_dir)
        return {"state": DONE, "scores": read_json(cell_dir / SCORES_FILE)}
    record = read_json(cell_dir / CELL_FILE, {}) or {}
    started = time.time()
    _record(cell_dir, cfg, status=RUNNING, attempts=int(record.get("attempts", 0)) + 1, started_at=started,
            error=None)
    return {"state": state, "started": started, "trained": (cell_dir / MODEL_DIR / SPEC_FILE).exists()}


def _run_claimed(cfg: DictConfig, cell_dir: Path, plan: dict, world) -> CellOutcome:
    from embedgrid.logger import NullLogger
    from embedgrid.train.distributed import run_on_main

    started, logger = plan["started"], None
    try:
        device = _setup_runtime(cfg)
        logger = _make_logger(cfg, cell_dir) if world.is_main else NullLogger()
        encoder, summary = _trained_encoder(cfg, cell_dir, device, logger, world, trained=plan["trained"])
        scores = run_on_main(lambda: _evaluate_and_record(cfg, cell_dir, encoder, summary, logger, started), world)
        return CellOutcome(cell_dir, DONE, scores, rank=world.rank)
    except BaseException as error:
        from embedgrid.train.loop import Preempted

        if world.is_main:
            status = PARTIAL if isinstance(error, (Preempted, KeyboardInterrupt)) else FAILED
            _record(cell_dir, cfg, status=status, error=f"{type(error).__name__}: {error}",
                    traceback=traceback.format_exc(), seconds=round(time.time() - started, 2))
        if logger is not None:
            logger.finish(1)
        raise


def _make_logger(cfg: DictConfig, cell_dir: Path):
    from hydra.utils import instantiate

    target = cfg.logger._target_
    if target.endswith("NullLogger"):
        return instantiate(cfg.logger)
    make = instantiate(cfg.logger, _partial_=True)  # called with plain dicts, not config nodes
    return make(run_id=wandb_run_id(cfg), name=cell_name(cfg), group=cfg.grid,
                run_config=OmegaConf.to_container(cfg, resolve=True), directory=str(cell_dir))


def wandb_run_id(cfg: DictConfig) -> str:
    """Stable per (grid, cell): a resumed or requeued cell logs into the same W&B run."""
    import hashlib

    return hashlib.sha256(f"{cfg.grid}/{cell_name(cfg)}".encode()).hexdigest()[:24]


def _trained_encoder(cfg: DictConfig, cell_dir: Path, device: str, logger, world, trained: bool):
    """The cell's encoder after training (built and trained, resumed, or loaded from ``model/``) + a summary.

    Every rank trains; rank 0 saves the model. When ``model/`` already exists only rank 0 needs the encoder.
    """
    from hydra.utils import instantiate

    from embedgrid.encoder import build_encoder, load_encoder
    from embedgrid.train.config import TrainConfig
    from embedgrid.train.distributed import all_sum
    from embedgrid.train.loop import fit

    model_dir = cell_dir / MODEL_DIR
    summary, t0 = {}, time.perf_counter()
    if trained:
        log.info("trained model found in %s; evaluation only", model_dir)
        encoder = load_encoder(model_dir, device=device) if world.is_main else None
        summary["train"] = (read_json(cell_dir / CELL_FILE, {}) or {}).get("train")
    else:
        encoder = build_encoder(encoder_spec(cfg)).to(device)
        train_cfg = TrainConfig(**OmegaConf.to_container(cfg.train, resolve=True))
        if train_cfg.max_steps > 0:
            rows = instantiate(cfg.data.loader)
            log.info("training on %d rows (%s) for %d steps", len(rows), cfg.data.name, train_cfg.max_steps)
            from embedgrid.train.signals import StopSignals

            with StopSignals() as stop:  # SIGTERM/SIGUSR1: checkpoint, then Preempted (cell stays partial)
                summary["train"] = fit(encoder, rows, train_cfg, seed=int(cfg.seed),
                                       checkpoint_dir=cell_dir / CHECKPOINT_DIR, logger=logger, should_stop=stop)
            summary["train"]["truncated_texts"] = int(all_sum(encoder.truncated, world))
            if world.is_main:
                _record(cell_dir, cfg, train=summary["train"])
        else:
            summary["train"] = {"steps": 0, "note": "zero-shot: untrained backbone with this pooling"}
        if world.is_main:
            encoder.save(model_dir)
    summary["timings"] = {"build_and_train_s": round(time.perf_counter() - t0, 2)}
    return encoder, summary


def _evaluate_and_record(cfg: DictConfig, cell_dir: Path, encoder, summary: dict, logger, started: float) -> dict:
    """Rank 0: evaluate the trained encoder, write scores.json and the finished cell.json; returns the scores."""
    from embedgrid.evaluate.run import evaluate_encoder

    summary["pooling_parameters"] = encoder.pooling.num_parameters
    summary["lora_parameters"] = sum(p.numel() for n, p in encoder.backbone.named_parameters() if "lora_" in n)
    t1 = time.perf_counter()
    scores, summary["category_scores"] = evaluate_encoder(
        encoder, OmegaConf.to_container(cfg.eval, resolve=True), cell_dir, name=f"embedgrid/{cell_name(cfg)}",
        revision=config_hash(cfg))
    summary["timings"]["eval_s"] = round(time.perf_counter() - t1, 2)
    write_json(cell_dir / SCORES_FILE, scores)
    logger.summary({f"eval/{task}": s["main_score"] for task, s in scores.items()})
    _record(cell_dir, cfg, status=DONE, finished_at=time.time(), seconds=round(time.time() - started, 2), **summary)
    logger.finish(0)
    return scores
