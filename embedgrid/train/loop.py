"""The training loop: InfoNCE on LoRA + pooling head, with exact resume from the cell's checkpoints.

Exact resume: step s's rows come from (seed, s) (batches.py) and its dropout masks from a generator seeded with
(seed, s, rank), so a checkpoint needs only the step plus weights and optimizer/scheduler state.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch

from embedgrid.celldir import LAST_CHECKPOINT
from embedgrid.data.rows import Row
from embedgrid.errors import NonFiniteLoss, Preempted  # noqa: F401  (re-exported)
from embedgrid.losses import InfoNCELoss
from embedgrid.train.batches import batch_rows
from embedgrid.train.checkpoint import load_checkpoint, save_checkpoint
from embedgrid.train.config import TrainConfig
from embedgrid.train.distributed import (World, all_mean, any_rank, average_gradients, barrier,
                                         broadcast_parameters, current_world)
from embedgrid.train.step import TextBatch, embed_texts, plain_step  # noqa: F401  (embed_texts: public helper)

log = logging.getLogger(__name__)


def make_optimizer(encoder, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; the pooling head gets its own lr; biases and norm weights (1-D) get no weight decay."""
    pooling_ids = {id(p) for p in encoder.pooling.parameters()}
    groups = {}
    for p in encoder.parameters():
        if not p.requires_grad:
            continue
        head = id(p) in pooling_ids
        decay = p.ndim >= 2
        key = (head, decay)
        if key not in groups:
            groups[key] = {"params": [], "lr": (cfg.pooling_lr or cfg.lr) if head else cfg.lr,
                           "weight_decay": cfg.weight_decay if decay else 0.0}
        groups[key]["params"].append(p)
    if not groups:
        raise ValueError("the encoder has no trainable parameters (lora.enabled=false and a parameter-free pooling?)")
    return torch.optim.AdamW([groups[k] for k in sorted(groups)])


def make_scheduler(optimizer, cfg: TrainConfig):
    """Linear warmup to the peak lr, then linear decay to 0 at max_steps."""
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / (cfg.warmup_steps + 1)
        return max(0.0, (cfg.max_steps - step) / max(1, cfg.max_steps - cfg.warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def step_seed(seed: int, step: int, rank: int) -> int:
    return ((seed * 1_000_003 + step) * 1_009 + rank) % (2**63)


def local_rows(rows: list[Row], cfg: TrainConfig, step: int, seed: int, world: World) -> list[Row]:
    """This rank's slice of the global batch of ``step`` (the same global batch whatever the world size)."""
    per_rank = cfg.batch_size // world.size
    batch = batch_rows(rows, cfg.batch_size, step, seed)
    return batch[world.rank * per_rank:(world.rank + 1) * per_rank]


def train_step(encoder, loss_fn, batch: TextBatch, cfg: TrainConfig, world: World) -> torch.Tensor:
    """Forward + backward of one step (GradCache or plain); gradients averaged over ranks; returns local loss."""
    if cfg.grad_cache:
        from embedgrid.train.gradcache import grad_cache_step

        loss = grad_cache_step(encoder, loss_fn, batch, world, cfg.grad_cache_chunk, cfg.bf16)
    else:
        loss = plain_step(encoder, loss_fn, batch, world, cfg.bf16)
    if world.enabled:
        average_gradients([p for p in encoder.parameters() if p.requires_grad], world)
    return loss


def enable_gradient_checkpointing(encoder) -> None:
    """Recompute backbone activations in backward (non-reentrant: keeps RNG state, works with frozen inputs)."""
    model = encoder.backbone.get_base_model() if hasattr(encoder.backbone, "get_base_model") else encoder.backbone
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x; the old name warns
        model.activation_checkpointing_enable({"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _check_world(cfg: TrainConfig, world: World) -> None:
    if cfg.batch_size % world.size:
        raise ValueError(f"train.batch_size={cfg.batch_size} is not divisible by the {world.size} processes")


def fit(encoder, rows: list[Row], cfg: TrainConfig, *, seed: int, checkpoint_dir: str | Path, logger=None,
        should_stop=lambda: False) -> dict:
    """Train for ``cfg.max_steps`` (resuming from ``checkpoint_dir/last`` if present); returns a summary.

    Under torch.distributed (torchrun / SLURM tasks, see distributed.init_from_env) each rank trains on its
    slice of every global batch, negatives span all ranks, and rank 0 writes checkpoints and logs.
    ``should_stop`` (e.g. train.signals.StopSignals) is polled after every step: when true on any rank, a
    checkpoint is written and ``Preempted`` raised.
    """
    from embedgrid.logger import NullLogger

    world = current_world()
    _check_world(cfg, world)
    logger = logger if (logger is not None and world.is_main) else NullLogger()
    checkpoint_dir = Path(checkpoint_dir)
    loss_fn = InfoNCELoss(cfg.temperature, cfg.symmetric_loss)
    trainable = [p for p in encoder.parameters() if p.requires_grad]
    broadcast_parameters(trainable, world)
    optimizer = make_optimizer(encoder, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    meta = load_checkpoint(checkpoint_dir, encoder, optimizer, scheduler, main=world.is_main)
    start = meta["step"] if meta else 0
    if start:
        log.info("resuming training at step %d/%d from %s", start, cfg.max_steps, meta["path"])
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(encoder)
    encoder.train()
    bar = None
    if cfg.progress_bar and cfg.max_steps > start and world.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.max_steps, initial=start, desc="train", unit="step", disable=False)  # TQDM_DISABLE
    history, started = [], time.perf_counter()
    for step in range(start, cfg.max_steps):
        t0 = time.perf_counter()
        torch.manual_seed(step_seed(seed, step, world.rank))
        batch = TextBatch.from_rows(local_rows(rows, cfg, step, seed, world), cfg.num_negatives)
        loss = all_mean(train_step(encoder, loss_fn, batch, cfg, world).item(), world)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm))
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            optimizer.zero_grad(set_to_none=True)
            last = checkpoint_dir / LAST_CHECKPOINT
            kept = f"last good checkpoint kept in {last}" if last.exists() else "no checkpoint written yet"
            raise NonFiniteLoss(f"non-finite training at step {step + 1}/{cfg.max_steps}: loss={loss}, "
                                f"grad_norm={grad_norm}; weights not updated, {kept} "
                                "(lower train.lr, enable train.max_grad_norm, or check the data)")
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - t0
        done = step + 1
        record = {"train/loss": loss, "train/lr": scheduler.get_last_lr()[0], "train/grad_norm": grad_norm,
                  "train/examples_per_s": cfg.batch_size / seconds, "train/seconds_per_step": seconds,
                  "train/candidates_per_query": len(batch.docs) * world.size, "train/examples": done * cfg.batch_size}
        history.append(loss)
        if step % cfg.log_every == 0 or done == cfg.max_steps:
            logger.log(record, step=done)
        if bar is not None:
            bar.set_postfix(loss=f"{loss:.4f}", ex_s=f"{record['train/examples_per_s']:.1f}")
            bar.update(1)
        stop = any_rank(bool(should_stop()), world)
        if done % cfg.checkpoint_every == 0 or done == cfg.max_steps or stop:
            if world.is_main:
                save_checkpoint(checkpoint_dir, encoder, optimizer, scheduler, done,
                                {"loss": loss, "batch_size": cfg.batch_size, "world_size": world.size,
                                 "examples_seen": done * cfg.batch_size})
            barrier(world)
        if stop and done < cfg.max_steps:
            if bar is not None:
                bar.close()
            raise Preempted(f"stopped at step {done}/{cfg.max_steps}; checkpoint written, relaunch to resume")
    if bar is not None:
        bar.close()
    encoder.eval()
    return {"start_step": start, "steps": cfg.max_steps, "final_loss": history[-1] if history else None,
            "first_loss": history[0] if history else None, "seconds": round(time.perf_counter() - started, 3),
            "world_size": world.size, "grad_cache": cfg.grad_cache}
