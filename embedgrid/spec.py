"""Plain description of an encoder: what the builder needs, what is saved beside the weights."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from embedgrid.attention import Attention
from embedgrid.errors import ConfigError

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
    builder takes from the backbone config. ``pool_instruction=False`` masks the prompt prefix (BOS and the
    instruction) out of pooling, for every text alike, so queries and documents are pooled over their own
    tokens (+ EOS) only. ``append_eos=False`` ends each text at its own last token (``EosLastPooling`` then pools
    that token). With ``lora.enabled=False`` the backbone is frozen and only the pooling head trains."""

    checkpoint: Any
    pooling: dict
    attention: str = "causal"
    revision: str | None = None
    dtype: str = "float32"
    attn_implementation: str = "sdpa"
    trust_remote_code: bool = False
    max_length: int = 128
    pool_instruction: bool = True
    append_eos: bool = True
    lora: LoraSpec = field(default_factory=LoraSpec)
    name: str = "encoder"

    def __post_init__(self):
        Attention(self.attention)  # fail here, naming the valid modes, not deep inside a build
        if "_target_" not in self.pooling:
            raise ConfigError(f"pooling spec needs a _target_ (a class in embedgrid.pooling); got {self.pooling}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "EncoderSpec":
        data = dict(data)
        data["lora"] = LoraSpec(**data.get("lora", {}))
        return cls(**data)
