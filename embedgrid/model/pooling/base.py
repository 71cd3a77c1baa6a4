"""What every pooling head shares: one signature, and the two token reductions the heads are built from."""
from __future__ import annotations

import torch
from torch import nn


class Pooling(nn.Module):
    """Maps backbone hidden states to one vector per text.

    Sizes come from the backbone's config (``hidden_size``, ``num_layers``, ``backbone_num_heads``) and the
    pooling config (the subclass's own keyword arguments); nothing is hard-coded.

    forward(hidden_states, attention_mask, pool_mask) -> (batch, output_dim)
      hidden_states: the backbone's layer outputs (embedding output first, last layer last); heads that set
        ``needs_all_layers = False`` receive only the last layer, as a 1-tuple.
      attention_mask: 1 on real tokens (either padding side).
      pool_mask: 1 on the tokens a text's vector may be built from (real tokens minus an excluded prefix).
    """

    needs_all_layers = False

    def __init__(self, hidden_size: int, num_layers: int, is_causal: bool, backbone_num_heads: int | None = None):
        super().__init__()
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.is_causal = is_causal
        self.backbone_num_heads = backbone_num_heads
        self.output_dim = hidden_size

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token: right for left and right padding alike."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (positions * attention_mask.long()).argmax(dim=1)


def last_token(states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    index = last_token_index(attention_mask)
    return states[torch.arange(states.shape[0], device=states.device), index]


def at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 → float32 for reductions, norms and the loss; float32 and float64 stay as they are."""
    return tensor if tensor.dtype in (torch.float32, torch.float64) else tensor.float()


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the positions where ``mask`` is 1, summed in float32 (a bf16 sum over long texts drifts).

    Masked positions are zeroed, not multiplied by 0, so even a non-finite state at a pad position cannot leak.
    """
    keep = mask.bool().unsqueeze(-1)
    total = at_least_float32(states).masked_fill(~keep, 0.0).sum(dim=-2)
    return total / keep.sum(dim=-2).clamp(min=1).to(total.dtype)
