"""The training loop: InfoNCE on LoRA + pooling head, with exact resume from the cell's checkpoints.

Exact resume: step s's rows come from (seed, s) (batches.py) and its dropout masks from a generator seeded with
(seed, s, rank), so a checkpoint needs only the step plus weights and optimizer/scheduler state.

Accumulation (``train.accumulation_steps``): the global batch is cut into micro-batches, each a separate InfoNCE
whose negatives are that micro-batch (over all ranks); the gradient is the mean of the micro-batch gradients.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch

from embedgrid.train.checkpoint import LAST_CHECKPOINT
from embedgrid.data.rows import Row, require_negatives
from embedgrid.errors import ConfigError, NonFiniteLoss, Preempted
from embedgrid.losses import InfoNCELoss, MatryoshkaInfoNCELoss, same_text_mask
from embedgrid.train.batches import batch_rows, choose_negatives, split_micro_batches
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


def micro_batch_rows(rows: list[Row], cfg: TrainConfig, step: int, seed: int, world: World) -> list[list[list[Row]]]:
    """``[micro][rank] -> rows`` of step ``step``: the same global batch whatever the world size."""
    batch = choose_negatives(batch_rows(rows, cfg.batch_size, step, seed), cfg.num_negatives, cfg.negatives, seed, step)
    return split_micro_batches(batch, cfg.accumulation_steps, world.size)


def local_rows(rows: list[Row], cfg: TrainConfig, step: int, seed: int, world: World) -> list[Row]:
    """This rank's rows of the global batch of ``step`` (all its micro-batches, in order)."""
    return [row for micro in micro_batch_rows(rows, cfg, step, seed, world) for row in micro[world.rank]]


def false_negative_masks(micro: list[list[Row]], num_negatives: int, rank: int):
    """(doc mask, query mask, count) for ``rank``'s rows of one micro-batch ``[rank] -> rows``.

    The candidates are every rank's docs (positives, then negatives, rank by rank: the gathered layout) and, for
    the symmetric term, every rank's queries. A doc with the text of the row's positive, or a query with the text
    of the row's query, is masked unless it is the row's own. ``count`` is the number of masked (row, doc) pairs
    of the whole micro-batch, the same on every rank.
    """
    parts = [TextBatch.from_rows(rows, num_negatives) for rows in micro]
    docs = [text for part in parts for text in part.docs]
    queries = [text for part in parts for text in part.queries]
    positives = [row.positive for rows in micro for row in rows]
    doc_labels, offset = [], 0
    for rows, part in zip(micro, parts):
        doc_labels += [offset + i for i in range(len(rows))]
        offset += len(part.docs)
    doc_mask = same_text_mask(positives, docs, doc_labels)
    query_mask = same_text_mask(queries, queries, list(range(len(queries))))
    start = sum(len(rows) for rows in micro[:rank])
    end = start + len(micro[rank])
    return doc_mask[start:end], query_mask[start:end], int(doc_mask.sum())


def step_batches(rows: list[Row], loss_fn, cfg: TrainConfig, step: int, seed: int, world: World):
    """This rank's micro-batches of ``step`` as (TextBatch, loss) pairs, and the step's count of identical-text
    candidates (masked out with ``train.false_negative_mask``, else scored as negatives, as the reference did)."""
    batches, false_negatives = [], 0
    for micro in micro_batch_rows(rows, cfg, step, seed, world):
        doc_mask, query_mask, count = false_negative_masks(micro, cfg.num_negatives, world.rank)
        fn = loss_fn.excluding(doc_mask, query_mask) if cfg.false_negative_mask else loss_fn
        batches.append((TextBatch.from_rows(micro[world.rank], cfg.num_negatives), fn))
        false_negatives += count
    return batches, false_negatives


def _forward_backward(encoder, loss_fn, batch: TextBatch, cfg: TrainConfig, world: World) -> torch.Tensor:
    from embedgrid.precision import bf16_active

    bf16 = bf16_active(cfg.bf16, encoder.device)
    if cfg.grad_cache:
        from embedgrid.train.gradcache import grad_cache_step

        return grad_cache_step(encoder, loss_fn, batch, world, cfg.grad_cache_chunk, bf16, cfg.length_sorted)
    return plain_step(encoder, loss_fn, batch, world, bf16, cfg.length_sorted)


def train_step(encoder, loss_fn, batch, cfg: TrainConfig, world: World) -> torch.Tensor:
    """Forward + backward of one step (GradCache or plain); returns the mean local loss.

    ``batch`` is one TextBatch (scored with ``loss_fn``) or a list of (TextBatch, loss) micro-batches: each
    micro-batch is its own InfoNCE and backward, and the summed gradients are divided by their number, so the
    step's gradient is the mean of the micro-batch gradients. Gradients are then averaged over ranks.
    """
    micro = [(batch, loss_fn)] if isinstance(batch, TextBatch) else list(batch)
    losses = [_forward_backward(encoder, fn, part, cfg, world) for part, fn in micro]
    params = [p for p in encoder.parameters() if p.requires_grad]
    if len(micro) > 1:
        for p in params:
            if p.grad is not None:
                p.grad /= len(micro)
    if world.enabled:
        average_gradients(params, world)
    return torch.stack(losses).mean()


def enable_gradient_checkpointing(encoder) -> None:
    """Recompute backbone activations in backward (non-reentrant: keeps RNG state, works with frozen inputs)."""
    model = encoder.backbone.get_base_model() if hasattr(encoder.backbone, "get_base_model") else encoder.backbone
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x; the old name warns
        model.activation_checkpointing_enable({"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _check_world(cfg: TrainConfig, world: World) -> None:
    if (cfg.batch_size // cfg.accumulation_steps) % world.size:
        micro = f" / train.accumulation_steps={cfg.accumulation_steps}" if cfg.accumulation_steps > 1 else ""
        raise ValueError(f"train.batch_size={cfg.batch_size}{micro} is not divisible by the {world.size} processes")


def make_loss(cfg: TrainConfig, dim: int) -> InfoNCELoss:
    """InfoNCE, or its Matryoshka form over ``train.matryoshka_dims`` (each at most the encoder's ``dim``)."""
    if cfg.matryoshka_dims is None:
        return InfoNCELoss(cfg.temperature, cfg.symmetric_loss)
    if max(cfg.matryoshka_dims) > dim:
        raise ConfigError(f"train.matryoshka_dims={list(cfg.matryoshka_dims)}: the encoder's vectors have {dim} "
                          f"dimensions; keep every entry <= {dim}")
    return MatryoshkaInfoNCELoss(cfg.matryoshka_dims, cfg.matryoshka_weights, cfg.temperature, cfg.symmetric_loss)


def candidates_per_query(cfg: TrainConfig) -> int:
    """Documents each query is scored against in one InfoNCE: its micro-batch's positives and hard negatives."""
    return cfg.batch_size // cfg.accumulation_steps * (1 + cfg.num_negatives)


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
    require_negatives(rows, cfg.num_negatives)  # a bad row names its file and line now, not mid-training
    logger = logger if (logger is not None and world.is_main) else NullLogger()
    checkpoint_dir = Path(checkpoint_dir)
    loss_fn = make_loss(cfg, encoder.dim)
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
    history, started, false_negative_total = [], time.perf_counter(), 0
    for step in range(start, cfg.max_steps):
        t0 = time.perf_counter()
        torch.manual_seed(step_seed(seed, step, world.rank))
        micro, false_negatives = step_batches(rows, loss_fn, cfg, step, seed, world)
        loss = all_mean(train_step(encoder, loss_fn, micro, cfg, world).item(), world)
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
                  "train/candidates_per_query": len(micro[0][0].docs) * world.size,
                  "train/false_negatives": false_negatives, "train/examples": done * cfg.batch_size}
        history.append(loss)
        false_negative_total += false_negatives
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
            "world_size": world.size, "grad_cache": cfg.grad_cache, "accumulation_steps": cfg.accumulation_steps,
            "candidates_per_query": candidates_per_query(cfg),
            "identical_text_candidates": false_negative_total,
            "false_negative_mask": cfg.false_negative_mask}
