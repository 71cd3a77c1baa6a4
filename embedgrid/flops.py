"""Model FLOPs of embedding work (for MFU = achieved FLOP/s over the machine's measured matmul peak).

Counted over real (unpadded) tokens, matmuls only: for a text of s tokens through L layers whose frozen
projections hold N weights and whose LoRA matrices hold R weights (A and B), with attention width
d = heads x head_dim,

  forward   2 (N + R) s + 4 L d s^2        (every weight: a multiply and an add per token; QK^T and AV)
  backward  2 N s + 4 R s + 8 L d s^2      (frozen weights: input gradients only, no weight gradients;
                                            LoRA: input and weight gradients; attention: both operands)
  training  4 N s + 6 R s + 12 L d s^2     (PaLM's 6 N + 12 L d s per token, with frozen base weights)
  encoding  2 N s + 4 L d s^2              (LoRA merged or off)

The attention term counts the full s x s product (as PaLM does) although a causal mask needs half. Not counted:
the embedding lookup, norms, activations, rotary, pooling, the loss (all O(s d), not matmuls), the first
layer's unneeded input gradient, GradCache's extra no-grad forward and padded positions: padding is waste,
which MFU is meant to expose.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelShape:
    layers: int
    attention_width: int  # heads x head_dim (the width of QK^T and AV)
    frozen_weights: int  # weights of the backbone's frozen projection matrices (all layers)
    lora_weights: int  # weights of the LoRA A and B matrices (all layers)

    @classmethod
    def of(cls, backbone) -> "ModelShape":
        """From a (peft-wrapped) transformers backbone: projections counted from its nn.Linear modules."""
        from torch import nn

        config = backbone.config
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        frozen = lora = 0
        for name, module in backbone.named_modules():  # peft: ...q_proj.base_layer, ...q_proj.lora_A.default
            if isinstance(module, nn.Linear):
                if ".lora_A." in name or ".lora_B." in name:
                    lora += module.weight.numel()
                else:
                    frozen += module.weight.numel()
        return cls(config.num_hidden_layers, heads * head_dim, frozen, lora)

    def training_flops(self, lengths) -> int:
        """Forward + backward FLOPs of one step over texts of ``lengths`` real tokens."""
        return self.training_flops_of(sum(lengths), sum(s * s for s in lengths))

    def forward_flops(self, lengths, lora: bool = False) -> int:
        return self.forward_flops_of(sum(lengths), sum(s * s for s in lengths), lora)

    def training_flops_of(self, tokens: int, squares: int) -> int:
        """``training_flops`` from the sums of the lengths and of their squares (what a running count keeps)."""
        return 4 * self.frozen_weights * tokens + 6 * self.lora_weights * tokens \
            + 12 * self.layers * self.attention_width * squares

    def forward_flops_of(self, tokens: int, squares: int, lora: bool = False) -> int:
        return 2 * (self.frozen_weights + (self.lora_weights if lora else 0)) * tokens \
            + 4 * self.layers * self.attention_width * squares
