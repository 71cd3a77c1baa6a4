"""The training loop: InfoNCE on LoRA + pooling head, with exact resume from the cell's checkpoints."""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch

from embedgrid.data.rows import Row
from embedgrid.losses import InfoNCELoss
from embedgrid.train.batches import batch_rows, split_batch
from embedgrid.train.checkpoint import load_checkpoint, save_checkpoint
from embedgrid.train.config import TrainConfig

log = logging.getLogger(__name__)


class NonFiniteLoss(RuntimeError):
    pass


class Preempted(RuntimeError):
    """Raised after a checkpoint was written because the job was asked to stop (SIGTERM/SIGUSR1)."""


def make_optimizer(encoder, cfg: TrainConfig) -> torch.optim.Optimizer:
    pooling_ids = {id(p) for p in encoder.pooling.parameters()}
    trainable = [p for p in encoder.parameters() if p.requires_grad]
    backbone = [p for p in trainable if id(p) not in pooling_ids]
    head = [p for p in trainable if id(p) in pooling_ids]
    groups = [{"params": backbone, "lr": cfg.lr}]
    if head:
        groups.append({"params": head, "lr": cfg.pooling_lr or cfg.lr})
    return torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=cfg.weight_decay)


def make_scheduler(optimizer, cfg: TrainConfig):
    """Linear warmup to the peak lr, then linear decay to 0 at max_steps."""
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / (cfg.warmup_steps + 1)
        return max(0.0, (cfg.max_steps - step) / max(1, cfg.max_steps - cfg.warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def embed_texts(encoder, texts: list[str], instructions: list[str | None] | None = None) -> torch.Tensor:
    """Embed with per-text instructions (texts sharing an instruction are tokenized together)."""
    if not instructions or all(i is None for i in instructions):
        return encoder.embed(encoder.tokenize(texts))
    out = [None] * len(texts)
    for instruction in dict.fromkeys(instructions):
        index = [i for i, x in enumerate(instructions) if x == instruction]
        vectors = encoder.embed(encoder.tokenize([texts[i] for i in index], instruction))
        for row, i in enumerate(index):
            out[i] = vectors[row]
    return torch.stack(out)


def compute_loss(encoder, loss_fn, batch: list[Row], cfg: TrainConfig) -> torch.Tensor:
    queries, instructions, docs = split_batch(batch, cfg.num_negatives)
    return loss_fn(embed_texts(encoder, queries, instructions), embed_texts(encoder, docs))


def fit(encoder, rows: list[Row], cfg: TrainConfig, *, seed: int, checkpoint_dir: str | Path, logger=None,
        should_stop=lambda: False) -> dict:
    """Train for ``cfg.max_steps`` (resuming from ``checkpoint_dir/last`` if present); returns a summary."""
    from embedgrid.logger import NullLogger

    logger = logger or NullLogger()
    checkpoint_dir = Path(checkpoint_dir)
    loss_fn = InfoNCELoss(cfg.temperature, cfg.symmetric_loss)
    optimizer = make_optimizer(encoder, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    torch.manual_seed(seed)
    meta = load_checkpoint(checkpoint_dir, encoder, optimizer, scheduler)
    start = meta["step"] if meta else 0
    if start:
        log.info("resuming training at step %d/%d from %s", start, cfg.max_steps, checkpoint_dir / "last")
    if cfg.gradient_checkpointing:
        encoder.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    encoder.train()
    steps = range(start, cfg.max_steps)
    bar = None
    if cfg.progress_bar and cfg.max_steps > start:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.max_steps, initial=start, desc="train", unit="step")
    history, started = [], time.perf_counter()
    for step in steps:
        t0 = time.perf_counter()
        batch = batch_rows(rows, cfg.batch_size, step, seed)
        loss = compute_loss(encoder, loss_fn, batch, cfg)
        if not math.isfinite(loss.item()):
            raise NonFiniteLoss(f"loss is {loss.item()} at step {step}; last good checkpoint kept in "
                                f"{checkpoint_dir / 'last'} (lower train.lr or check the data)")
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_([p for p in encoder.parameters() if p.requires_grad],
                                                   cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - t0
        record = {"train/loss": loss.item(), "train/lr": scheduler.get_last_lr()[0],
                  "train/grad_norm": float(grad_norm), "train/examples_per_s": cfg.batch_size / seconds}
        history.append(record["train/loss"])
        if step % cfg.log_every == 0 or step + 1 == cfg.max_steps:
            logger.log(record, step=step + 1)
        if bar is not None:
            bar.set_postfix(loss=f"{record['train/loss']:.4f}", ex_s=f"{record['train/examples_per_s']:.1f}")
            bar.update(1)
        done = step + 1
        if done % cfg.checkpoint_every == 0 or done == cfg.max_steps or should_stop():
            save_checkpoint(checkpoint_dir, encoder, optimizer, scheduler, done, {"loss": record["train/loss"]})
        if should_stop() and done < cfg.max_steps:
            raise Preempted(f"stopped at step {done}/{cfg.max_steps}; checkpoint written, relaunch to resume")
    if bar is not None:
        bar.close()
    encoder.eval()
    return {"start_step": start, "steps": cfg.max_steps, "final_loss": history[-1] if history else None,
            "first_loss": history[0] if history else None, "seconds": round(time.perf_counter() - started, 3)}
