"""One contrastive training step's forward + backward (the plain path; GradCache lives in gradcache.py).

Length-sorted chunks: a step's texts (queries and docs together, grouped by instruction) are tokenized once,
sorted by token count and embedded in chunks of similar length, so short texts are not padded to the batch's
longest; the vectors go back to their input order before the loss, so the batch, its candidates and the loss are
those of the unsorted step (equal up to float32 reduction order; with LoRA dropout each text draws a different,
equally distributed mask).
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch

from embedgrid.data.rows import Row
from embedgrid.model.batching import input_order, sorted_chunks
from embedgrid.precision import autocast as precision_autocast
from embedgrid.precision import frozen_weights_in_bf16
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
    """bf16 autocast on the encoder's device when ``bf16`` (resolved by precision.bf16_active)."""
    return precision_autocast(encoder.device, bf16)


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


@dataclass
class Tokenized:
    """One side of a step tokenized once: unpadded ids and the pooled-prefix length of every text."""

    rows: list[list[int]]
    prefix: list[int]

    @classmethod
    def of(cls, encoder, texts: list[str], instructions: list[str | None] | None = None) -> "Tokenized":
        instructions = instructions or [None] * len(texts)
        rows: list = [None] * len(texts)
        prefix = [0] * len(texts)
        for instruction in dict.fromkeys(instructions):
            index = [i for i, x in enumerate(instructions) if x == instruction]
            group, length = encoder.token_rows([texts[i] for i in index], instruction)
            for row, i in zip(group, index):
                rows[i], prefix[i] = row, length
        return cls(rows, prefix)

    def embed(self, encoder, index: list[int]) -> torch.Tensor:
        """Vectors of ``index`` (in that order); rows with different prefix lengths are collated separately."""
        parts, order = [], []
        for length in dict.fromkeys(self.prefix[i] for i in index):
            group = [i for i in index if self.prefix[i] == length]
            parts.append(encoder.embed(encoder.collate([self.rows[i] for i in group], length)))
            order += group
        vectors = parts[0] if len(parts) == 1 else torch.cat(parts)
        if order == list(index):
            return vectors
        position = {i: k for k, i in enumerate(order)}
        return vectors[torch.tensor([position[i] for i in index], device=vectors.device)]

    def embed_chunks(self, encoder, chunks: list[list[int]]) -> torch.Tensor:
        """Every text's vector, in input order, computed chunk by chunk."""
        vectors = torch.cat([self.embed(encoder, chunk) for chunk in chunks])
        return vectors[input_order(chunks).to(vectors.device)]


# Per-call cost of one chunk's forward + backward in tokens of its per-token cost, measured on a 2-core Sapphire
# Rapids at 1 thread (time = fixed + tokens x per-token, least squares over 16 chunks of 2-32 texts x 8-60
# tokens, LoRA on every projection): the 2-layer tiny model (53k linear weights per layer) 220 (float32) / 173
# (bf16) tokens, SmolLM2-135M (3.7M per layer) 37 / 112. Elsewhere a power law in the weights per layer through
# those two points: small models pay mostly per-op dispatch, large ones mostly per-token matmul work.
CHUNK_OVERHEAD = {False: (37.3, -0.418), True: (111.6, -0.104)}  # bf16: (tokens at 3.7M weights, exponent)
REFERENCE_LAYER_WEIGHTS = 3.7e6
_LAYER_WEIGHTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def overhead_tokens(encoder, bf16: bool) -> float:
    if encoder not in _LAYER_WEIGHTS:
        config = encoder.backbone.config
        linear = sum(m.weight.numel() for m in encoder.backbone.modules() if isinstance(m, torch.nn.Linear))
        _LAYER_WEIGHTS[encoder] = max(1, linear // max(1, getattr(config, "num_hidden_layers", 1)))
    tokens, exponent = CHUNK_OVERHEAD[bool(bf16)]
    return tokens * (_LAYER_WEIGHTS[encoder] / REFERENCE_LAYER_WEIGHTS) ** exponent


def embed_sorted(encoder, texts: list[str], instructions: list[str | None] | None = None, *,
                 bf16: bool = False) -> torch.Tensor:
    """``embed_texts`` in length-sorted chunks (per prefix length), vectors in input order."""
    side = Tokenized.of(encoder, texts, instructions)
    chunks, cost = [], overhead_tokens(encoder, bf16)
    for length in dict.fromkeys(side.prefix):
        group = [i for i, p in enumerate(side.prefix) if p == length]
        chunks += [[group[k] for k in chunk] for chunk in sorted_chunks([len(side.rows[i]) for i in group], cost)]
    return side.embed_chunks(encoder, chunks)


def contrastive_loss(loss_fn, queries: torch.Tensor, docs: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's queries against every rank's docs (gathered with gradient), labels offset by rank."""
    all_docs = gather_with_grad(docs, world)
    all_queries = gather_with_grad(queries, world) if getattr(loss_fn, "symmetric", False) else None
    return loss_fn(queries, all_docs, label_offset=world.rank * docs.shape[0], all_queries=all_queries,
                   query_offset=world.rank * queries.shape[0])


def plain_step(encoder, loss_fn, batch: TextBatch, world: World, bf16: bool = False,
               length_sorted: bool = False) -> torch.Tensor:
    """Forward the whole local batch with autograd, backward; returns the (detached) local loss.

    Under bf16 the backbone runs in autocast (its frozen weights cast once for the step, and kept so through
    backward, which reuses them), while the similarities and the loss are float32, outside autocast.
    """
    with frozen_weights_in_bf16(encoder.backbone, enabled=bf16):
        with autocast(encoder, bf16):
            if length_sorted:  # queries and docs share chunks (texts with another instruction are apart)
                vectors = embed_sorted(encoder, batch.queries + batch.docs,
                                       list(batch.instructions) + [None] * len(batch.docs), bf16=bf16)
                queries, docs = vectors[:len(batch.queries)], vectors[len(batch.queries):]
            else:
                queries = embed_texts(encoder, batch.queries, batch.instructions)
                docs = embed_texts(encoder, batch.docs)
        loss = contrastive_loss(loss_fn, queries, docs, world)
        loss.backward()
    return loss.detach()
