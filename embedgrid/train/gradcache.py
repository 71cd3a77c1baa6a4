"""GradCache (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup").

Hand-written because no maintained PyPI package does it (``gradcache`` 0.0.1 dates from 2022, before peft and
transformers 5); the algorithm is ~40 lines:
  1. embed every chunk without autograd, remembering the RNG state before each chunk;
  2. compute the loss on the cached embeddings (gathered across ranks) and backprop to the embeddings only;
  3. re-embed each chunk with autograd under its remembered RNG state (same dropout masks) and backprop the
     cached embedding gradient through it.
The gradient equals the non-cached one; peak activation memory is one chunk's, whatever the batch size.
With ``length_sorted`` each side's texts are tokenized once and chunked in token-length order (chunks keep
``chunk_size`` texts, so memory is still bounded by the chunk), and the cached vectors and their gradients are
kept in input order, so the loss is the unsorted step's.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from embedgrid.model.batching import fixed_size_chunks, input_order, length_order
from embedgrid.precision import frozen_weights_in_bf16
from embedgrid.train.distributed import World
from embedgrid.train.step import TextBatch, Tokenized, autocast, contrastive_loss, embed_texts


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


class _Chunks:
    """One side's chunks: input-order slices of the texts, or length-sorted index chunks of them tokenized once."""

    def __init__(self, encoder, texts: list[str], instructions: list[str | None] | None, size: int, sort: bool):
        self.tokenized = Tokenized.of(encoder, texts, instructions) if sort else None
        order = length_order([len(row) for row in self.tokenized.rows]) if sort else list(range(len(texts)))
        self.index = fixed_size_chunks(order, size)
        self.texts, self.instructions = texts, instructions

    def embed(self, encoder, chunk: int) -> torch.Tensor:
        index = self.index[chunk]
        if self.tokenized is not None:
            return self.tokenized.embed(encoder, index)
        return embed_texts(encoder, [self.texts[i] for i in index],
                           [self.instructions[i] for i in index] if self.instructions else None)

    def flat(self) -> torch.Tensor:
        return torch.tensor([i for chunk in self.index for i in chunk])


def grad_cache_step(encoder, loss_fn, batch: TextBatch, world: World, chunk_size: int,
                    bf16: bool = False, length_sorted: bool = False) -> torch.Tensor:
    """Same gradients as ``step.plain_step`` on the same chunks, at the memory of one chunk."""
    if chunk_size < 1:
        raise ValueError(f"train.grad_cache_chunk must be >= 1, got {chunk_size}")
    device = encoder.device
    sides = [_Chunks(encoder, batch.queries, batch.instructions, chunk_size, length_sorted),
             _Chunks(encoder, batch.docs, None, chunk_size, length_sorted)]
    states: list[list[RngState]] = [[], []]
    reps = []
    with frozen_weights_in_bf16(encoder.backbone, enabled=bf16):
        with torch.no_grad():
            for side, chunks in enumerate(sides):
                cached = []
                for chunk in range(len(chunks.index)):
                    states[side].append(RngState.capture(device))
                    with autocast(encoder, bf16):
                        cached.append(chunks.embed(encoder, chunk))
                vectors = torch.cat(cached)  # chunk order; back to input order for the loss
                reps.append(vectors[input_order(chunks.index).to(vectors.device)].requires_grad_())
        queries, docs = reps
        loss = contrastive_loss(loss_fn, queries, docs, world)
        loss.backward()
        after = RngState.capture(device)
        for side, chunks in enumerate(sides):
            grads = reps[side].grad[chunks.flat().to(device)].split(chunk_size)
            for chunk, (state, grad) in enumerate(zip(states[side], grads)):
                state.restore(device)
                with autocast(encoder, bf16):
                    vectors = chunks.embed(encoder, chunk)
                vectors.backward(grad)
    after.restore(device)  # later RNG use continues as if each chunk had been embedded once
    return loss.detach()
