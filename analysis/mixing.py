"""Which cells may be averaged as seeds of one design: the pooling rule.

Cells are seeds of one design only if their recorded configurations differ in nothing but the seed and the keys
below, which change how a cell runs or what it is called, never what it measures. Any other difference, and any
difference in what the cell's provenance says changes results (library versions, input fingerprints, the model's
revision), refuses the analysis with every differing key named; ``--by KEY`` splits the cells into designs,
``--pool-over KEY`` averages them anyway and the report says so. Code versions, devices and the identity format
version may differ between seeds: the report's provenance section flags them by name.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from analysis.errors import MixedDesigns

# Runtime-only keys (a key also covers everything below it): where and how fast a cell runs, how it logs, what it
# is called. The evaluation keys here do not change a task's score (the score-relevant ones are
# eval.instructions, eval.instruction_scope, eval.max_samples, eval.task_samples and eval.sample_seed); the task
# list does not either (each task is scored on its own; tables show a design's task counts).
RUNTIME_KEYS = (
    "seed",                          # what seeds are
    "threads", "device",             # where it runs (the device actually used is in the provenance)
    "dry_run", "analyze", "verbose",  # what the launch does besides the cell
    "grid", "design", "model.card",  # names: the sweep, the paper's design label, the model card's metadata
    "logger", "hydra", "launcher",   # logging and the launcher
    "train.checkpoint_every", "train.log_every", "train.progress_bar", "train.length_sorted",
    "eval.name", "eval.tasks", "eval.batch_size", "eval.batch_tokens", "eval.compile", "eval.progress_bar",
)
# Keys that define what is trained and how texts are encoded, named first when cells differ.
IDENTITY_PREFIXES = ("model", "pooling", "attention", "perceiver", "train", "data", "lora", "instruction_template",
                     "instruction_join", "instruction_in_pooling", "append_eos")
PROVENANCE = "provenance"
# Provenance entries that change results: cells of one design must agree on them (--pool-over to override).
PROVENANCE_RESULT_KEYS = ("provenance.libraries", "provenance.inputs", "provenance.model_revision")
# Provenance entries that may differ between seeds; the report flags each difference by name.
PROVENANCE_FLAG_KEYS = ("provenance.code", "provenance.device", "provenance.identity_version")
LIBRARIES = ("torch", "transformers", "peft", "mteb", "sentence-transformers")


def covered(key: str, prefixes) -> bool:
    """``key`` is one of ``prefixes`` or lies below one of them (dotted)."""
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def flatten(node, prefix: str = "") -> dict[str, str]:
    """{dotted key: JSON text of the leaf}; an empty dict is a leaf of its own."""
    if isinstance(node, dict) and node:
        out = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: json.dumps(node, sort_keys=True, default=str)}


def provenance_of(record: dict) -> dict:
    """The cell's ``provenance`` object; cells written before it existed give their library versions from
    ``versions`` (the same packages) and nothing else."""
    provenance = record.get(PROVENANCE)
    if isinstance(provenance, dict):
        return provenance
    versions = record.get("versions")
    if isinstance(versions, dict):
        libraries = {name: versions[name] for name in LIBRARIES if name in versions}
        if libraries:
            return {"libraries": libraries}
    return {}


def comparable(config: dict, provenance: dict) -> dict[str, str]:
    """Everything that must agree between seeds of one design, flattened (runtime keys and the seed removed)."""
    flat = ({k: v for k, v in flatten(config).items() if not covered(k, RUNTIME_KEYS)} if config else
            {"config": "not recorded"})   # nothing to check it against: never taken for a seed of a design
    if provenance:
        flat.update(flatten(provenance, PROVENANCE + "."))
    return flat


def order(key: str) -> tuple:
    """Identity-relevant keys first (model, pooling, attention, train, data, lora, prompt keys), then the
    provenance that changes results, then the rest; alphabetical within each."""
    if covered(key, IDENTITY_PREFIXES):
        return (0, IDENTITY_PREFIXES.index(next(p for p in IDENTITY_PREFIXES if covered(key, (p,)))), key)
    if covered(key, PROVENANCE_RESULT_KEYS):
        return (1, 0, key)
    return (2, 0, key)


@dataclass
class Difference:
    key: str
    values: dict[str, list[str]]    # JSON text of the value ("absent" when a cell does not record it) → cells

    def describe(self, limit: int = 3) -> str:
        parts = []
        for value, cells in sorted(self.values.items(), key=lambda item: (-len(item[1]), item[0])):
            shown = ", ".join(cells[:limit]) + (f", … ({len(cells)} cells)" if len(cells) > limit else "")
            parts.append(f"{value} ({shown})")
        return f"{self.key}: " + "; ".join(parts)


@dataclass
class Mix:
    """Cells of one design whose recorded configurations or provenance differ in more than runtime keys."""
    design: str
    cells: list[str]
    refused: list[Difference] = field(default_factory=list)   # config or result-changing provenance
    pooled: list[Difference] = field(default_factory=list)    # differences the user pooled over (--pool-over)
    flagged: list[Difference] = field(default_factory=list)   # provenance that may differ (code, device)


ABSENT = "absent"


def differences(cells: list[str], flats: list[dict[str, str]]) -> list[Difference]:
    """Every key whose value is not the same in all cells; a key one cell records and another does not is a
    difference of config (``absent``), but provenance a cell does not record is compared only among those that do
    (cells written before provenance existed)."""
    keys = sorted(set().union(*flats), key=order) if flats else []
    if 0 < sum("config" in flat for flat in flats) < len(flats):   # some record no config: that is the difference
        keys = ["config"] + [k for k in keys if k.startswith(PROVENANCE + ".")]
    out = []
    for key in keys:
        values: dict[str, list[str]] = {}
        for cell, flat in zip(cells, flats):
            value = flat.get(key)
            if value is None and key.startswith(PROVENANCE + "."):
                continue
            missing = "recorded" if key == "config" else ABSENT
            values.setdefault(missing if value is None else value, []).append(cell)
        if len(values) > 1:
            out.append(Difference(key, values))
    return out


def check_design(design: str, cells: list[str], flats: list[dict[str, str]], pool_over=()) -> Mix | None:
    diffs = differences(cells, flats)
    if not diffs:
        return None
    mix = Mix(design, list(cells))
    for diff in diffs:
        if covered(diff.key, pool_over):
            mix.pooled.append(diff)
        elif covered(diff.key, PROVENANCE_FLAG_KEYS):
            mix.flagged.append(diff)
        else:
            mix.refused.append(diff)
    return mix


def refusal(mixes: list[Mix]) -> MixedDesigns:
    """The error for every design whose cells cannot be averaged, each differing key named, with the fixes."""
    refused = [m for m in mixes if m.refused]
    lines = [f"{len(refused)} design(s) hold cells that differ in more than the seed and runtime-only keys; they "
             f"are not averaged as seeds:"]
    keys: list[str] = []
    for mix in refused:
        lines.append(f"  {mix.design}: {len(mix.cells)} cells differ in {len(mix.refused)} key(s):")
        lines += [f"    {diff.describe()}" for diff in mix.refused]
        keys += [d.key for d in mix.refused if d.key not in keys]
    shown = ",".join(keys[:4]) + (",…" if len(keys) > 4 else "")
    lines += [f"fix: --by {shown} (each value its own design), or --pool-over {shown} (average them anyway; the "
              f"report names what was pooled)",
              "(the runtime-only keys, which may differ between seeds, are listed in docs/analysis.md)"]
    return MixedDesigns("\n".join(lines))
