"""Pre-norm cross-attention + GEGLU feed-forward block shared by the two trainable poolings."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GEGLU(nn.Module):
    def forward(self, x):
        x, gate = x.chunk(2, dim=-1)
        return x * F.gelu(gate)


class CrossAttentionBlock(nn.Module):
    """queries <- queries + Attn(LN(queries), LN(context)); queries <- queries + FF(LN(queries)).

    ``context_mask`` (batch, context_len) hides padding from the keys.
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int, ff_mult: int):
        super().__init__()
        inner = num_heads * head_dim
        self.num_heads, self.head_dim = num_heads, head_dim
        self.norm_q = nn.LayerNorm(dim)
        self.norm_ctx = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * ff_mult * dim), GEGLU(), nn.Linear(ff_mult * dim, dim))

    def _heads(self, x):
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, queries: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None):
        q = self._heads(self.to_q(self.norm_q(queries)))
        k, v = (self._heads(t) for t in self.to_kv(self.norm_ctx(context)).chunk(2, dim=-1))
        mask = None if context_mask is None else context_mask.bool()[:, None, None, :]
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        b, _, n, _ = attended.shape
        queries = queries + self.to_out(attended.transpose(1, 2).reshape(b, n, -1))
        return queries + self.ff(self.norm_ff(queries))


def broadcast_latents(latents: nn.Parameter, batch: int) -> torch.Tensor:
    return latents.unsqueeze(0).expand(batch, -1, -1)
