"""InfoNCE over cosine similarity with in-batch and hard negatives."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


class InfoNCELoss(nn.Module):
    """Contrastive loss: each query scores its positive against every document in the (gathered) batch.

    Args:
        temperature: softmax temperature on cosine similarity (0.05 = the paper's scale 20).
        symmetric: also score each positive against every query (document → query direction), averaged.

    Inputs:
        queries: (B, d) L2-normalised; docs: (B * (1 + k), d) L2-normalised, laid out as the B positives
        followed by the k hard negatives of each query (query i's negatives are rows B + i*k ... B + i*k + k-1).
        The positive of query i is row i; every other row is a negative for it.

    False negatives: ``excluding(doc_mask, query_mask)`` returns this loss with (B, N_docs) / (B, N_queries)
    boolean masks whose True entries are removed from a row's softmax (a candidate with the text of the row's
    positive, resp. query: not a negative). The row's own label is never masked.

    References: van den Oord et al. 2018 (CPC); the paper's llm2vec ``HardNegativeNLLLoss``.
    """

    def __init__(self, temperature: float = 0.05, symmetric: bool = False):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.symmetric = symmetric
        self.doc_mask: torch.Tensor | None = None
        self.query_mask: torch.Tensor | None = None

    def excluding(self, doc_mask: torch.Tensor | None, query_mask: torch.Tensor | None = None) -> "InfoNCELoss":
        """A copy of this loss that leaves the masked candidates out of each row's softmax."""
        bound = copy.copy(self)
        bound.doc_mask, bound.query_mask = doc_mask, query_mask
        return bound

    def _logits(self, rows: torch.Tensor, candidates: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        logits = rows @ candidates.T / self.temperature
        if mask is not None:
            if mask.shape != logits.shape:
                raise ValueError(f"false-negative mask {tuple(mask.shape)} does not match logits {tuple(logits.shape)}")
            logits = logits.masked_fill(mask.to(logits.device), float("-inf"))
        return logits

    def forward(self, queries: torch.Tensor, docs: torch.Tensor, label_offset: int = 0,
                all_queries: torch.Tensor | None = None, query_offset: int = 0) -> torch.Tensor:
        """Mean loss over ``queries``.

        Data parallel: ``docs`` are every rank's docs concatenated (rank r's block first holds its positives), so
        ``label_offset`` is where this rank's positives start; for the symmetric term ``all_queries`` are the
        gathered queries and ``query_offset`` is where this rank's queries start in them.
        """
        batch = queries.shape[0]
        if docs.shape[0] < label_offset + batch:
            raise ValueError(f"{docs.shape[0]} docs cannot hold the positives of {batch} queries at "
                             f"offset {label_offset}")
        labels = torch.arange(batch, device=queries.device)
        loss = F.cross_entropy(self._logits(queries, docs, self.doc_mask), labels + label_offset)
        if self.symmetric:
            positives = docs[label_offset:label_offset + batch]
            candidates = queries if all_queries is None else all_queries
            offset = 0 if all_queries is None else query_offset
            logits = self._logits(positives, candidates, self.query_mask)
            loss = (loss + F.cross_entropy(logits, labels + offset)) / 2
        return loss
