"""Designs (model × pooling × attention [× extra config keys]) and the paper's comparisons as named presets."""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Callable

from analysis.errors import OptionError
from cellfiles.designs import PAPER_TABLE

# Tang & Yang 2024, designs 1-5: (pooling, attention) -> number, from the one table (cellfiles.designs)
PAPER_DESIGNS = {(d.pooling, d.attention): d.number for d in PAPER_TABLE}
DEFAULT_BASELINE = (PAPER_TABLE[0].pooling, PAPER_TABLE[0].attention)   # design 1
ALL = "*"  # a factor's value in a design pooled over it (analysis.factors)


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
    """Model (designs pooled over the models last), then the paper's designs 1-5, then the others by pooling
    (causal before bidirectional)."""
    return (design.model == ALL, design.model, design.extra, design.paper_number or 99, design.pooling,
            design.attention != "causal", design.attention)


Pair = tuple[Design, Design]   # (reference, candidate): differences are candidate − reference


@dataclass(frozen=True)
class PairContext:
    """What a preset needs besides the designs: the baseline design and the twin setting (``--twin KEY=VALUE``)."""
    baseline: tuple[str, str] = DEFAULT_BASELINE
    twin: tuple[str, str] | None = None


def parse_twin(text: str) -> tuple[str, str]:
    """'train.max_steps=0' → ('train.max_steps', '0'); the value is normalised as collect() writes it (YAML, then
    str: 'false' → 'False'), so it matches the design's --by value."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise OptionError(f"twin must be KEY=VALUE (e.g. train.max_steps=0), got '{text}'")
    try:
        parsed = yaml.safe_load(value.strip())
    except yaml.YAMLError:
        parsed = value.strip()
    return key.strip(), str(parsed)


def _paper_pairs(numbers: list[tuple[int, int]]) -> Callable[[list[Design], PairContext], list[Pair]]:
    def pairs(designs: list[Design], context: PairContext) -> list[Pair]:
        out = []
        for variant in sorted({d.variant for d in designs}):
            by_number = {n: Design(variant[0], p, a, variant[1]) for (p, a), n in PAPER_DESIGNS.items()}
            out += [(by_number[a], by_number[b]) for a, b in numbers]
        return out
    return pairs


def vs_baseline(designs: list[Design], context: PairContext) -> list[Pair]:
    out = []
    for design in sorted(designs, key=display_order):
        reference = Design(design.model, context.baseline[0], context.baseline[1], design.extra)
        if design != reference:
            out.append((reference, design))
    return out


def all_pairs(designs: list[Design], context: PairContext) -> list[Pair]:
    return [(a, b) for a, b in combinations(sorted(designs, key=display_order), 2) if a.variant == b.variant]


def twins(designs: list[Design], context: PairContext) -> list[Pair]:
    """Each design against its twin: the same design with the twin key at the twin value (a correction, a
    training setting, zero-shot vs trained); differences are design − twin."""
    if context.twin is None:
        raise OptionError("comparison preset 'twins' needs the twin setting: --twin KEY=VALUE "
                          "(e.g. --twin train.max_steps=0)")
    key, value = context.twin
    out = []
    for design in sorted(designs, key=display_order):
        extra = dict(design.extra)
        if key not in extra:
            raise OptionError(f"twin key '{key}' does not split the designs; add it to --by")
        if extra[key] != value:
            reference = Design(design.model, design.pooling, design.attention,
                               tuple((k, value if k == key else v) for k, v in design.extra))
            out.append((reference, design))
    return out


def derived_factors(designs: list[Design], context: PairContext) -> list[Pair]:
    from analysis.factors import factor_pairs   # factors builds on Design: a real import cycle

    return factor_pairs(designs, context)


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
    "factors": ("the grid's factors, derived from the designs found: each factor's simple effects (pairs that "
                "differ in that factor only), where the designs form a full factorial its main effects, and with several "
                "models each design pooled over them against the pooled baseline",
                derived_factors),
    "twins": ("every design vs its twin at the --twin setting (same model, pooling, attention)", twins),
}
DEFAULT_PRESETS = tuple(p for p in PRESETS if p != "twins")   # twins needs --twin
PAPER_PRESETS = ("pooling_causal", "pooling_bidirectional", "attention_trainable")
# The pre-registered Holm family: the paper's own questions (pooling under each attention, attention under
# trainable pooling), on out-of-domain categories; "auto" (the default) takes them where the sweep has any of their
# pairs, else the family derived from the grid's factors. Either way it is fixed by which designs exist, before
# any score is read.
AUTO_FAMILY = "auto"
DEFAULT_FAMILY = (AUTO_FAMILY,)


def describe_preset(name: str, twin: str | None = None) -> str:
    return PRESETS[name][0].replace("the --twin setting", f"`{twin}`") if twin else PRESETS[name][0]


def resolve_presets(names) -> list[str]:
    """Expand 'paper' and validate names (error lists the valid ones); 'auto' is kept for resolve_family."""
    out = []
    for name in names:
        expanded = PAPER_PRESETS if name == "paper" else (name,)
        if name == AUTO_FAMILY:
            out += [] if name in out else [name]
            continue
        for item in expanded:
            if item not in PRESETS:
                raise OptionError(f"unknown comparison preset '{item}'; valid: paper, {', '.join(PRESETS)}")
            if item not in out:
                out.append(item)
    return out


def resolve_family(names, designs: list[Design], context: PairContext) -> tuple[tuple[str, ...], str]:
    """(family presets, why) with 'auto' replaced: the paper's presets where at least one of their pairs has both
    designs in the sweep, else the derived factors."""
    if AUTO_FAMILY not in names:
        return tuple(names), ""
    present = set(designs)
    paper = [pair for name in PAPER_PRESETS for pair in PRESETS[name][1](designs, context)
             if set(pair) <= present]
    chosen = PAPER_PRESETS if paper else ("factors",)
    why = ("the paper's comparisons (their designs are in the sweep)" if paper else
           "the grid's own factors: the paper's comparisons name no pair of designs this sweep has")
    rest = tuple(n for n in names if n != AUTO_FAMILY and n not in chosen)
    return tuple(chosen) + rest, why
