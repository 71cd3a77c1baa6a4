"""The backbone's attention mode: a plain value that specs, schemas and the backbone loader all import."""
from __future__ import annotations

from dataclasses import dataclass

from embedgrid.errors import ConfigError

ATTENTION_MODES = ("causal", "bidirectional")


@dataclass(frozen=True)
class Attention:
    """Attention mode of the backbone: ``causal`` or ``bidirectional``."""

    name: str

    def __post_init__(self):
        if self.name not in ATTENTION_MODES:
            raise ConfigError(f"unknown attention.name={self.name!r}; valid: {', '.join(ATTENTION_MODES)}")

    @property
    def is_causal(self) -> bool:
        return self.name == "causal"
