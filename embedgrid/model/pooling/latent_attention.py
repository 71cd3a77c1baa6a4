from __future__ import annotations

import torch
from torch import nn

from embedgrid.model.pooling.base import Pooling, masked_mean
from embedgrid.model.pooling.cross_attention import CrossAttentionBlock, attention_geometry, broadcast_latents


class LatentAttentionPooling(Pooling):
    """NV-Embed latent attention (Lee et al. 2024), ``pooling=nv_embed``: not one of the paper's designs.

    Every token of the last layer queries a trainable latent array (Q = tokens, K/V = latents), then a GEGLU
    MLP; the text vector is the masked mean over the pooled tokens. Tokens never attend to each other here, so
    padding cannot leak into a real token and is excluded from the mean. The paper's designs 2-5 use the
    reverse direction (latents read the tokens): :class:`embedgrid.model.pooling.PerceiverPooling`.
    """

    def __init__(self, hidden_size: int, num_layers: int, is_causal: bool, backbone_num_heads: int | None = None,
                 num_latents: int = 512, num_heads: int | None = None, head_dim: int | None = None,
                 ff_mult: int = 4, output_dim: int | None = None):
        super().__init__(hidden_size, num_layers, is_causal, backbone_num_heads)
        heads, head_dim = attention_geometry(hidden_size, num_heads, head_dim, backbone_num_heads)
        self.latents = nn.Parameter(torch.randn(num_latents, hidden_size) * hidden_size**-0.5)
        self.block = CrossAttentionBlock(hidden_size, heads, head_dim, ff_mult)
        self.project = nn.Linear(hidden_size, output_dim) if output_dim else nn.Identity()
        self.output_dim = output_dim or hidden_size

    def forward(self, hidden_states, attention_mask, pool_mask):
        tokens = hidden_states[-1].to(self.latents.dtype)
        mixed = self.block(queries=tokens, context=broadcast_latents(self.latents, tokens.shape[0]))
        return self.project(masked_mean(mixed, pool_mask))
