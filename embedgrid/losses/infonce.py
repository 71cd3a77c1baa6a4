"""InfoNCE over cosine similarity with in-batch and hard negatives."""
from __future__ import annotations

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

    References: van den Oord et al. 2018 (CPC); the paper's llm2vec ``HardNegativeNLLLoss``.
    """

    def __init__(self, temperature: float = 0.05, symmetric: bool = False):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.symmetric = symmetric

    def forward(self, queries: torch.Tensor, docs: torch.Tensor, label_offset: int = 0) -> torch.Tensor:
        scores = queries @ docs.T / self.temperature
        labels = torch.arange(queries.shape[0], device=queries.device) + label_offset
        loss = F.cross_entropy(scores, labels)
        if self.symmetric:
            batch = queries.shape[0]
            positives = docs[label_offset:label_offset + batch]
            loss = (loss + F.cross_entropy(positives @ queries.T / self.temperature,
                                           torch.arange(batch, device=queries.device))) / 2
        return loss
