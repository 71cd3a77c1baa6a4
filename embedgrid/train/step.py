"""One contrastive training step's forward + backward (the plain path; GradCache lives in gradcache.py)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from embedgrid.data.rows import Row
from embedgrid.train.distributed import World, gather_with_grad


@dataclass(frozen=True)
class TextBatch:
    """This rank's texts for one step: queries (with their instructions) and docs (positives, then negatives)."""

    queries: list[str]
    instructions: list[str | None]
    docs: list[str]

    @classmethod
    def from_rows(cls, rows: list[Row], num_negatives: int) -> "TextBatch":
        from embedgrid.train.batches import split_batch

        return cls(*split_batch(rows, num_negatives))


def autocast(encoder, bf16: bool):
    """bf16 autocast on GPU (embeddings come out float32: Encoder.forward casts before normalising)."""
    device = encoder.device
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda")


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


def contrastive_loss(loss_fn, queries: torch.Tensor, docs: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's queries against every rank's docs (gathered with gradient), labels offset by rank."""
    all_docs = gather_with_grad(docs, world)
    all_queries = gather_with_grad(queries, world) if getattr(loss_fn, "symmetric", False) else None
    return loss_fn(queries, all_docs, label_offset=world.rank * docs.shape[0], all_queries=all_queries,
                   query_offset=world.rank * queries.shape[0])


def plain_step(encoder, loss_fn, batch: TextBatch, world: World, bf16: bool = False) -> torch.Tensor:
    """Forward the whole local batch with autograd, backward; returns the (detached) local loss."""
    with autocast(encoder, bf16):
        queries = embed_texts(encoder, batch.queries, batch.instructions)
        docs = embed_texts(encoder, batch.docs)
    loss = contrastive_loss(loss_fn, queries, docs, world)
    loss.backward()
    return loss.detach()
