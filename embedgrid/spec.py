"""Plain description of an encoder: what the builder needs, what is saved beside the weights."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoraSpec:
    enabled: bool = True
    r: int = 16
    alpha: int = 32
    dropout: float = 0.1
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_LORA_TARGETS))


@dataclass
class EncoderSpec:
    """``checkpoint``: a path / hub id, or a ``_target_`` dict that produces one (kept unresolved so a saved
    encoder rebuilds on another machine). ``pooling``: ``{"_target_": ..., **kwargs}`` without the sizes the
    builder takes from the backbone config."""

    checkpoint: Any
    pooling: dict
    attention: str = "causal"
    revision: str | None = None
    dtype: str = "float32"
    attn_implementation: str = "sdpa"
    trust_remote_code: bool = False
    max_length: int = 128
    pool_instruction: bool = True
    lora: LoraSpec = field(default_factory=LoraSpec)
    name: str = "encoder"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "EncoderSpec":
        data = dict(data)
        data["lora"] = LoraSpec(**data.get("lora", {}))
        return cls(**data)
