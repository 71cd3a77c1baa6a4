"""InfoNCE on Matryoshka prefixes: the first k dimensions of every vector, renormalised, for each k."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from embedgrid.losses.infonce import InfoNCELoss


def _prefix(vectors: torch.Tensor | None, dim: int) -> torch.Tensor | None:
    return None if vectors is None else F.normalize(vectors[:, :dim], dim=-1)


class MatryoshkaInfoNCELoss(InfoNCELoss):
    """``sum_k weight_k * InfoNCE(prefix_k(queries), prefix_k(docs))`` (Kusupati et al. 2022, "Matryoshka
    Representation Learning"; sentence-transformers' ``MatryoshkaLoss`` weights the same way).

    A prefix is the first ``k`` dimensions, L2-renormalised, so a truncated vector is trained as it is used. The
    loss is a function of the embeddings only, so GradCache (the loss on cached vectors) and accumulation (one loss
    per micro-batch) give the direct computation's gradient. Temperature, symmetry and false-negative masks are
    InfoNCELoss's, the same at every dimension.
    """

    def __init__(self, dims: list[int], weights: list[float] | None = None, temperature: float = 0.05,
                 symmetric: bool = False):
        super().__init__(temperature, symmetric)
        weights = [1.0] * len(dims) if weights is None else list(weights)
        if not dims or len(weights) != len(dims):
            raise ValueError(f"matryoshka dims {list(dims)} and weights {weights} must be non-empty and as many")
        if any(d < 1 for d in dims) or len(set(dims)) != len(dims) or any(w <= 0 for w in weights):
            raise ValueError(f"matryoshka dims {list(dims)} must be distinct and >= 1, weights {weights} > 0")
        self.dims, self.weights = [int(d) for d in dims], [float(w) for w in weights]

    def forward(self, queries: torch.Tensor, docs: torch.Tensor, label_offset: int = 0,
                all_queries: torch.Tensor | None = None, query_offset: int = 0) -> torch.Tensor:
        if max(self.dims) > queries.shape[-1]:
            raise ValueError(f"matryoshka dims {self.dims} exceed the embedding dimension {queries.shape[-1]}")
        total = queries.new_zeros(())
        for dim, weight in zip(self.dims, self.weights):
            total = total + weight * super().forward(_prefix(queries, dim), _prefix(docs, dim), label_offset,
                                                     _prefix(all_queries, dim), query_offset)
        return total
