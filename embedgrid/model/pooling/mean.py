from __future__ import annotations

from embedgrid.model.pooling.base import Pooling, masked_mean


class MeanPooling(Pooling):
    """Mean of the last layer over the pooled tokens (padding, and the prompt prefix if excluded, masked out)."""

    def forward(self, hidden_states, attention_mask, pool_mask):
        return masked_mean(hidden_states[-1], pool_mask)
