"""Pre-norm cross-attention + GEGLU feed-forward block shared by the two trainable poolings."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MAX_HEAD_DIM = 256  # beyond this fused attention kernels (flash-attention) refuse; docs/designs.md, defect 6


def attention_geometry(hidden_size: int, num_heads: int | None, head_dim: int | None,
                       backbone_num_heads: int | None) -> tuple[int, int]:
    """(num_heads, head_dim): from the pooling config, else the backbone's head count and hidden_size / heads."""
    heads = num_heads or backbone_num_heads
    if not heads:
        raise ValueError("pooling num_heads is null and the backbone config has no num_attention_heads; "
                         "set pooling.head.num_heads")
    if head_dim is None:
        if hidden_size % heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {heads}; "
                             "set pooling.head.head_dim explicitly")
        head_dim = hidden_size // heads
    if head_dim > MAX_HEAD_DIM:
        raise ValueError(f"pooling head_dim {head_dim} > {MAX_HEAD_DIM} (hidden_size {hidden_size} / {heads} "
                         f"heads); use more heads or a smaller head_dim")
    return heads, head_dim


class GEGLU(nn.Module):
    def forward(self, x):
        x, gate = x.chunk(2, dim=-1)
        return x * F.gelu(gate)


class CrossAttentionBlock(nn.Module):
    """queries <- queries + Attn(Q=LN(queries), K/V=LN(context)); queries <- queries + FF(LN(queries)).

    The direction is explicit in the argument names (the paper's reference code swaps them: docs/designs.md, defect 7).
    ``context_mask`` (batch, context_len), 1 = attend, hides padding from the keys; every row must keep at
    least one key.
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
        width = self.norm_q.normalized_shape[0]
        if queries.shape[-1] != width or context.shape[-1] != width:
            raise ValueError(f"cross-attention expects width {width}, got queries {tuple(queries.shape)} and "
                             f"context {tuple(context.shape)}")
        q = self._heads(self.to_q(self.norm_q(queries)))
        k, v = (self._heads(t) for t in self.to_kv(self.norm_ctx(context)).chunk(2, dim=-1))
        mask = None if context_mask is None else context_mask.bool()[:, None, None, :]
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        b, _, n, _ = attended.shape
        queries = queries + self.to_out(attended.transpose(1, 2).reshape(b, n, -1))
        return queries + self.ff(self.norm_ff(queries))


def broadcast_latents(latents: nn.Parameter, batch: int) -> torch.Tensor:
    return latents.unsqueeze(0).expand(batch, -1, -1)
