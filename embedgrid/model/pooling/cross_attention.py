"""Pre-norm cross-attention + GEGLU feed-forward block shared by the trainable poolings."""
from __future__ import annotations

import logging
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

# Fused attention kernels (flash-attention) take head dims up to 256; beyond that the block runs on SDPA's math
# kernel (the reference pooler uses 2048: docs/designs.md, defect 6), which is slower but exact.
MAX_FUSED_HEAD_DIM = 256
_warned: set[int] = set()


def attention_geometry(hidden_size: int, num_heads: int | None, head_dim: int | None,
                       backbone_num_heads: int | None) -> tuple[int, int]:
    """(num_heads, head_dim): from the pooling config, else the backbone's head count and hidden_size / heads."""
    heads = num_heads or backbone_num_heads
    if not heads:
        raise ValueError("pooling num_heads is null and the backbone config has no num_attention_heads; "
                         "set perceiver.num_heads (designs 2-5) or pooling.head.num_heads")
    if head_dim is None:
        if hidden_size % heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {heads}; "
                             "set perceiver.head_dim (designs 2-5) or pooling.head.head_dim")
        head_dim = hidden_size // heads
    if head_dim > MAX_FUSED_HEAD_DIM and head_dim not in _warned:
        _warned.add(head_dim)
        log.warning("pooling head_dim %d > %d (%d heads): fused attention kernels do not take it, so the pooler "
                    "runs on the math SDPA kernel (exact, slower, more memory)", head_dim, MAX_FUSED_HEAD_DIM,
                    heads)
    return heads, head_dim


class GEGLU(nn.Module):
    def forward(self, x):
        x, gate = x.chunk(2, dim=-1)
        return x * F.gelu(gate)


class CrossAttentionBlock(nn.Module):
    """queries <- queries + Attn(Q=LN(queries), K/V=LN(context)); queries <- queries + FF(LN(queries)).

    The direction is explicit in the argument names (the paper's reference code swaps them: docs/designs.md,
    defect 7).
    ``context_mask`` (batch, context_len), 1 = attend, hides padding from the keys; every row must keep at
    least one key. ``queries`` may have batch size 1 (a latent array shared by every row): its projection is
    then computed once and broadcast. ``scale`` is the attention logit scale (None: 1/sqrt(head_dim)).
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int, ff_mult: int, scale: float | None = None):
        super().__init__()
        inner = num_heads * head_dim
        self.num_heads, self.head_dim, self.scale = num_heads, head_dim, scale
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

    def _kernel(self):
        if self.head_dim <= MAX_FUSED_HEAD_DIM:
            return nullcontext()
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel(SDPBackend.MATH)

    def forward(self, queries: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None):
        width = self.norm_q.normalized_shape[0]
        if queries.shape[-1] != width or context.shape[-1] != width:
            raise ValueError(f"cross-attention expects width {width}, got queries {tuple(queries.shape)} and "
                             f"context {tuple(context.shape)}")
        batch = context.shape[0]
        q = self._heads(self.to_q(self.norm_q(queries)))
        if q.shape[0] != batch:
            q = q.expand(batch, -1, -1, -1)
        k, v = (self._heads(t) for t in self.to_kv(self.norm_ctx(context)).chunk(2, dim=-1))
        mask = None if context_mask is None else context_mask.bool()[:, None, None, :]
        with self._kernel():
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        b, _, n, _ = attended.shape
        queries = queries + self.to_out(attended.transpose(1, 2).reshape(b, n, -1))
        return queries + self.ff(self.norm_ff(queries))


def broadcast_latents(latents: nn.Parameter, batch: int) -> torch.Tensor:
    return latents.unsqueeze(0).expand(batch, -1, -1)
