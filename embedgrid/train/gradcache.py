"""GradCache (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup").

Hand-written because no maintained PyPI package does it (``gradcache`` 0.0.1 dates from 2022, before peft and
transformers 5); the algorithm is ~40 lines:
  1. embed every chunk without autograd, remembering the RNG state before each chunk;
  2. compute the loss on the cached embeddings (gathered across ranks) and backprop to the embeddings only;
  3. re-embed each chunk with autograd under its remembered RNG state (same dropout masks) and backprop the
     cached embedding gradient through it.
The gradient equals the non-cached one; peak activation memory is one chunk's, whatever the batch size.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from embedgrid.train.distributed import World
from embedgrid.train.step import TextBatch, autocast, contrastive_loss, embed_texts


@dataclass
class RngState:
    cpu: torch.Tensor
    cuda: torch.Tensor | None

    @classmethod
    def capture(cls, device: torch.device) -> "RngState":
        return cls(torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None)

    def restore(self, device: torch.device) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, device)


def _chunks(texts: list[str], instructions: list[str | None] | None, size: int):
    for start in range(0, len(texts), size):
        yield texts[start:start + size], (instructions[start:start + size] if instructions else None)


def grad_cache_step(encoder, loss_fn, batch: TextBatch, world: World, chunk_size: int,
                    bf16: bool = False) -> torch.Tensor:
    """Same gradients as ``step.plain_step`` on the same chunks, at the memory of one chunk."""
    if chunk_size < 1:
        raise ValueError(f"train.grad_cache_chunk must be >= 1, got {chunk_size}")
    device = encoder.device
    parts = [list(_chunks(batch.queries, batch.instructions, chunk_size)), list(_chunks(batch.docs, None, chunk_size))]
    states: list[list[RngState]] = [[], []]
    cached: list[list[torch.Tensor]] = [[], []]
    with torch.no_grad():
        for side in (0, 1):
            for texts, instructions in parts[side]:
                states[side].append(RngState.capture(device))
                with autocast(encoder, bf16):
                    cached[side].append(embed_texts(encoder, texts, instructions))
    queries = torch.cat(cached[0]).requires_grad_()
    docs = torch.cat(cached[1]).requires_grad_()
    loss = contrastive_loss(loss_fn, queries, docs, world)
    loss.backward()
    after = RngState.capture(device)
    for side, reps in ((0, queries), (1, docs)):
        grads = reps.grad.split(chunk_size)
        for (texts, instructions), state, grad in zip(parts[side], states[side], grads):
            state.restore(device)
            with autocast(encoder, bf16):
                chunk = embed_texts(encoder, texts, instructions)
            chunk.backward(grad)
    after.restore(device)  # later RNG use continues as if each chunk had been embedded once
    return loss.detach()
