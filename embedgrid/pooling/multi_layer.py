from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from embedgrid.pooling.base import Pooling, last_token, masked_mean
from embedgrid.pooling.cross_attention import CrossAttentionBlock, attention_geometry, broadcast_latents

LAYER_REDUCTIONS = ("auto", "eos", "mean")


class MultiLayerPooling(Pooling):
    """Multi-Layers Trainable Pooling (Tang & Yang 2024).

    One vector per transformer layer (the embedding output excluded): the EOS state under causal attention,
    the masked mean under bidirectional (or forced by ``layer_reduce``). Each is layer-normalised (without
    weights) before a learned per-layer vector is added (the reference code added it to raw residual states of
    arbitrary scale, docs/designs.md, defect 8); trainable latents then cross-attend to the layer vectors
    (Q = latents, K/V = layers), a GEGLU MLP follows, and the latents are averaged.
    """

    needs_all_layers = True

    def __init__(self, hidden_size: int, num_layers: int, is_causal: bool, backbone_num_heads: int | None = None,
                 num_latents: int = 512, num_heads: int | None = None, head_dim: int | None = None,
                 ff_mult: int = 4, output_dim: int | None = None, layer_reduce: str = "auto"):
        super().__init__(hidden_size, num_layers, is_causal, backbone_num_heads)
        if layer_reduce not in LAYER_REDUCTIONS:
            raise ValueError(f"unknown layer_reduce '{layer_reduce}'; valid: {', '.join(LAYER_REDUCTIONS)}")
        heads, head_dim = attention_geometry(hidden_size, num_heads, head_dim, backbone_num_heads)
        self.layer_reduce = ("eos" if is_causal else "mean") if layer_reduce == "auto" else layer_reduce
        # Small init (as position embeddings): a per-layer prior that training grows, not noise on the content.
        self.layer_weights = nn.Parameter(torch.randn(num_layers, hidden_size) * 0.02)
        self.latents = nn.Parameter(torch.randn(num_latents, hidden_size) * hidden_size**-0.5)
        self.block = CrossAttentionBlock(hidden_size, heads, head_dim, ff_mult)
        self.project = nn.Linear(hidden_size, output_dim) if output_dim else nn.Identity()
        self.output_dim = output_dim or hidden_size

    def layer_vectors(self, hidden_states, attention_mask, pool_mask) -> torch.Tensor:
        """(batch, num_layers, hidden), layer-normalised: one vector per layer, hidden_states[0] excluded."""
        layers = hidden_states[1:]
        if len(layers) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} layer outputs (+ the embedding output), got {len(layers)}")
        if self.layer_reduce == "eos":
            vectors = [last_token(h, attention_mask) for h in layers]
        else:
            vectors = [masked_mean(h, pool_mask) for h in layers]
        stacked = torch.stack(vectors, dim=1).to(self.latents.dtype)
        return F.layer_norm(stacked, (self.hidden_size,))

    def forward(self, hidden_states, attention_mask, pool_mask):
        layers = self.layer_vectors(hidden_states, attention_mask, pool_mask) + self.layer_weights
        latents = self.block(queries=broadcast_latents(self.latents, layers.shape[0]), context=layers)
        return self.project(latents.mean(dim=1))
