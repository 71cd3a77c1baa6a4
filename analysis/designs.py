"""Designs (model × pooling × attention [× extra config keys]) and the paper's comparisons as named presets."""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Callable

from analysis.errors import OptionError

# Tang & Yang 2024, designs 1-5 (pooling, attention).
PAPER_DESIGNS = {
    ("eos_last", "causal"): 1,
    ("last_layer_trainable", "causal"): 2,
    ("multi_layer_trainable", "causal"): 3,
    ("last_layer_trainable", "bidirectional"): 4,
    ("multi_layer_trainable", "bidirectional"): 5,
}
DEFAULT_BASELINE = ("eos_last", "causal")


@dataclass(frozen=True, order=True)
class Design:
    model: str
    pooling: str
    attention: str
    extra: tuple[tuple[str, str], ...] = field(default=())   # (config key, value) from --by

    @property
    def paper_number(self) -> int | None:
        return PAPER_DESIGNS.get((self.pooling, self.attention))

    @property
    def variant(self) -> tuple:
        """Everything but pooling and attention: comparisons stay within one model (and extra settings)."""
        return (self.model, self.extra)

    def label(self, with_model: bool = True) -> str:
        parts = ([self.model] if with_model else []) + [self.pooling, self.attention]
        parts += [f"{key}={value}" for key, value in self.extra]
        text = "/".join(parts)
        return f"{text} (#{self.paper_number})" if self.paper_number else text


def display_order(design: Design) -> tuple:
    """Model, then the paper's designs 1-5, then the others by pooling (causal before bidirectional)."""
    return (design.model, design.extra, design.paper_number or 99, design.pooling, design.attention != "causal",
            design.attention)


Pair = tuple[Design, Design]   # (reference, candidate): differences are candidate − reference


def _paper_pairs(numbers: list[tuple[int, int]]) -> Callable[[list[Design], tuple[str, str]], list[Pair]]:
    def pairs(designs: list[Design], baseline: tuple[str, str]) -> list[Pair]:
        out = []
        for variant in sorted({d.variant for d in designs}):
            by_number = {n: Design(variant[0], p, a, variant[1]) for (p, a), n in PAPER_DESIGNS.items()}
            out += [(by_number[a], by_number[b]) for a, b in numbers]
        return out
    return pairs


def vs_baseline(designs: list[Design], baseline: tuple[str, str]) -> list[Pair]:
    out = []
    for design in sorted(designs, key=display_order):
        reference = Design(design.model, baseline[0], baseline[1], design.extra)
        if design != reference:
            out.append((reference, design))
    return out


def all_pairs(designs: list[Design], baseline: tuple[str, str]) -> list[Pair]:
    return [(a, b) for a, b in combinations(sorted(designs, key=display_order), 2) if a.variant == b.variant]


# name → (description, pairs(designs, baseline)). Paper presets name designs that may be absent: those pairs are
# reported as skipped, never silently dropped.
PRESETS: dict[str, tuple[str, Callable]] = {
    "vs_baseline": ("every design vs the baseline (the report's difference table)", vs_baseline),
    "pooling_causal": ("pooling under causal attention: designs 1 vs 2 vs 3",
                       _paper_pairs([(1, 2), (1, 3), (2, 3)])),
    "pooling_bidirectional": ("pooling under bidirectional attention: designs 4 vs 5", _paper_pairs([(4, 5)])),
    "attention_trainable": ("attention under trainable pooling: designs 2 vs 4, 3 vs 5",
                            _paper_pairs([(2, 4), (3, 5)])),
    "all_pairs": ("all pairs of designs (within a model)", all_pairs),
}
DEFAULT_PRESETS = tuple(PRESETS)
PAPER_PRESETS = ("pooling_causal", "pooling_bidirectional", "attention_trainable")
# The pre-registered Holm family: the paper's own questions (pooling under each attention, attention under
# trainable pooling), on out-of-domain categories.
DEFAULT_FAMILY = ("paper",)


def resolve_presets(names) -> list[str]:
    """Expand 'paper' and validate names (error lists the valid ones)."""
    out = []
    for name in names:
        expanded = PAPER_PRESETS if name == "paper" else (name,)
        for item in expanded:
            if item not in PRESETS:
                raise OptionError(f"unknown comparison preset '{item}'; valid: paper, {', '.join(PRESETS)}")
            if item not in out:
                out.append(item)
    return out
