"""Plain description of an encoder: what the builder needs, what is saved beside the weights."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from embedgrid.model.attention import Attention
from embedgrid.errors import ConfigError

DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
DEFAULT_INSTRUCTION_TEMPLATE = "Instruct: {instruction}\nQuery: {text}"  # e5-mistral style
DEFAULT_INSTRUCTION_JOIN = "template"
INSTRUCTION_JOINS = ("template", "paper")


def check_instructions(template: str, join: str, pool_instruction: bool = True) -> None:
    """``instruction_template`` holds ``{instruction}`` and ``{text}`` once each; ``instruction_join`` is known; the
    paper's joined string has no token boundary, so it cannot be masked out of pooling."""
    if join not in INSTRUCTION_JOINS:
        raise ConfigError(f"unknown instruction_join={join!r}; valid: {', '.join(INSTRUCTION_JOINS)}")
    if join == "paper" and not pool_instruction:
        raise ConfigError("instruction_join=paper tokenizes instruction + text as one string, so the instruction has "
                          "no token boundary to mask: set instruction_in_pooling=true or instruction_join=template")
    for name in ("{instruction}", "{text}"):
        if template.count(name) != 1:
            raise ConfigError(f"instruction_template must contain {name} exactly once, got {template!r}")


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
    that token). ``instruction_template`` (``{instruction}`` and ``{text}``, each once) formats a text that has
    an instruction; the part before ``{text}`` is tokenized on its own, so the instruction is an exact token prefix.
    ``instruction_join="paper"`` concatenates instruction and text with no separator and tokenizes the joined
    string, as the paper's reference code did (the template is then unused). With ``lora.enabled=False`` the
    backbone is frozen and only the pooling head trains."""

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
    instruction_template: str = DEFAULT_INSTRUCTION_TEMPLATE
    instruction_join: str = DEFAULT_INSTRUCTION_JOIN
    lora: LoraSpec = field(default_factory=LoraSpec)
    name: str = "encoder"

    def __post_init__(self):
        Attention(self.attention)  # fail here, naming the valid modes, not deep inside a build
        if "_target_" not in self.pooling:
            raise ConfigError(f"pooling spec needs a _target_ (a class in embedgrid.model.pooling); got {self.pooling}")
        check_instructions(self.instruction_template, self.instruction_join, self.pool_instruction)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "EncoderSpec":
        data = dict(data)
        data["lora"] = LoraSpec(**data.get("lora", {}))
        return cls(**data)
