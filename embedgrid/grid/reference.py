"""The configuration reference page, generated from the typed schema and conf/ (docs/configuration.md).

``python -m embedgrid.grid.reference > docs/configuration.md`` writes it; tests/grid/test_reference.py fails when
the committed page differs from what this module prints, so the page cannot go stale. Every group of
``GridSchema`` (schema.py) with its keys, types, schema defaults, the value the default cell uses, choices and
ranges, the presets in ``conf/<group>/`` with what each sets, and the other config groups (designs, experiments,
Hydra launchers and sweeper). Ranges of TrainConfig and EvalConfig are found by constructing them; choices come
from the constants the checks use.
"""
from __future__ import annotations

import dataclasses
import inspect
import io
import json
import re
import tokenize
from importlib import import_module
from pathlib import Path
from typing import Any

import yaml
from omegaconf import MISSING

from embedgrid.evaluate.config import INSTRUCTION_SCOPES, EvalConfig
from embedgrid.grid.schema import DATA_PREFIX, DTYPES, LOGGER_RUNTIME_ARGUMENTS, LOGGER_TARGETS, GridSchema
from embedgrid.model.attention import ATTENTION_MODES
from embedgrid.model.spec import INSTRUCTION_JOINS
from embedgrid.train.config import TrainConfig

CONF = Path(__file__).resolve().parents[2] / "conf"
OTHER_GROUPS = ("design", "experiment", "hydra/launcher", "hydra/sweeper")
CHOICES = {
    "device": "`auto`, `cpu`, `cuda`, `cuda:N`, `mps`",
    "model.dtype": ", ".join(f"`{d}`" for d in DTYPES),
    "attention.name": ", ".join(f"`{m}`" for m in ATTENTION_MODES),
    "instruction_join": ", ".join(f"`{j}`" for j in INSTRUCTION_JOINS),
    "eval.instruction_scope": ", ".join(f"`{s}`" for s in INSTRUCTION_SCOPES)
    + ", or `{<mteb task type>: query|all, default: query|all}`",
    "train.bf16": "`false`, `true`, `auto`",
    "instruction_template": "contains `{instruction}` and `{text}` once each",
    "threads": "≥ 1 or null",
    "model.max_length": "≥ 2",
    "train.max_length": "≥ 2 or null",
    "lora.r": "≥ 1 (when enabled)",
    "lora.alpha": "> 0 (when enabled)",
    "lora.dropout": "0 ≤ p < 1 (when enabled)",
}
LONG = 6  # lists and mappings longer than this are summarised in the preset tables


def type_name(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "")
    text = re.sub(r"Optional\[(.*)\]$", r"\1 | None", text)
    text = re.sub(r"List\[(\w+)\]", r"list[\1]", text).replace("Dict[", "dict[")
    return text.replace(" | None", " or null").replace("Any", "any")


def show(value: Any) -> str:
    """A value as it would be written on the command line, in code font (long lists and mappings summarised)."""
    if value is MISSING or value == "???":
        return "`???`"
    if isinstance(value, list) and len(value) > LONG:
        return f"{len(value)} items: `{', '.join(map(str, value[:3]))}, …`"
    if isinstance(value, dict) and len(value) > LONG:
        return f"{len(value)} entries: `{', '.join(map(str, list(value)[:3]))}, …`"
    if isinstance(value, str) and value and not re.search(r"[\n\t]", value):
        text = value
    else:
        text = json.dumps(value) if isinstance(value, str) else yaml.safe_dump(
            value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()
    return f"`{text}`"


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def field_comments(cls: type) -> dict[str, str]:
    """The trailing ``# comment`` of each ``name: type = default`` line of a dataclass's source."""
    comments = {}
    source = inspect.getsource(cls)
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            match = re.match(r"\s*(\w+)\s*:", token.line)
            if match and token.line.strip().startswith(match.group(1)):
                comments[match.group(1)] = token.string.lstrip("# ").strip()
    return comments


def yaml_comments(path: Path) -> tuple[str, dict[str, str]]:
    """A conf file's header comment and the trailing comment of each top-level ``key:`` line."""
    header, keys, last = [], {}, None
    for line in path.read_text().splitlines():
        if line.startswith("#") and not keys and "@package" not in line:
            header.append(line.lstrip("# ").rstrip())
        match = re.match(r"^(\w+):[^#]*#\s*(.*)$", line)
        if match:
            last = match.group(1)
            keys[last] = match.group(2).strip()
        elif last and re.match(r"^\s+#", line):  # a comment continued under the key's own comment
            keys[last] += " " + line.strip().lstrip("# ")
        else:
            last = None
    return " ".join(h for h in header if h), keys


def flat(node: Any, prefix: str = "", limit: int = 2 * LONG) -> dict[str, Any]:
    """``{a: {b: 1}}`` -> ``{"a.b": 1}``; mappings longer than ``limit`` below the top stay whole (summarised)."""
    if isinstance(node, dict) and node and (not prefix or len(node) <= limit):
        out = {}
        for key, value in node.items():
            out.update(flat(value, f"{prefix}.{key}" if prefix else str(key), limit))
        return out
    return {prefix: node}


def presets(group: str) -> list[tuple[str, str, dict]]:
    out = []
    for path in sorted((CONF / group).glob("*.yaml")):
        header, _ = yaml_comments(path)
        data = yaml.safe_load(path.read_text()) or {}
        out.append((path.stem, header, data))
    return out


def range_probe(cls: type, name: str, kind: type) -> str:
    """The lower bound a dataclass's own checks put on a numeric field: constructed at -1, 0 and 1."""
    if kind not in (int, float):
        return ""
    accepted = []
    for value in (-1, 0, 1):
        try:
            cls(**{name: kind(value)})
            accepted.append(value)
        except (ValueError, TypeError):
            pass
    if accepted == [0, 1]:
        return "≥ 0"
    if accepted == [1]:
        return "> 0" if kind is float else "≥ 1"
    return ""


def numeric_kind(annotation: Any) -> type | None:
    text = str(annotation)
    return int if text.startswith("int") else float if text.startswith("float") else None


def group_defaults() -> dict[str, str]:
    defaults = {}
    for entry in yaml.safe_load((CONF / "config.yaml").read_text())["defaults"]:
        if isinstance(entry, dict):
            (key, value), = entry.items()
            if not key.startswith("override") and value is not None:
                defaults[key] = value
    return defaults


def keys_table(group: str, cls: type | None, chosen: dict, comments: dict[str, str]) -> list[str]:
    rows = ["| key | type | schema default | default cell | choices / range | what |", "|---|---|---|---|---|---|"]
    fields = dataclasses.fields(cls) if cls else []
    for f in fields:
        key = f"{group}.{f.name}" if group else f.name
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else MISSING)
        if dataclasses.is_dataclass(default):
            continue
        used = chosen.get(f.name, default)
        choice = CHOICES.get(key, "")
        if cls in (TrainConfig, EvalConfig) and not choice and numeric_kind(f.type):
            choice = range_probe(cls, f.name, numeric_kind(f.type))
        parts = (f"`{key}`", type_name(f.type), show(default), show(used), choice, comments.get(f.name, ""))
        rows.append("| " + " | ".join(cell(part) for part in parts) + " |")
    return rows


def callable_arguments(target: str, given_by_caller=()) -> str:
    module, _, name = target.rpartition(".")
    function = getattr(import_module(module), name)
    params = inspect.signature(function).parameters
    return ", ".join(f"`{n}`" + ("" if p.default is inspect.Parameter.empty else f" = {show(p.default)}")
                     for n, p in params.items() if n not in ("self", *given_by_caller))


def pooling_heads() -> list[str]:
    from embedgrid.model.pooling import POOLINGS
    from embedgrid.model.pooling.build import SIZE_ARGUMENTS

    rows = ["| `_target_` | keyword arguments (sizes come from the backbone) |", "|---|---|"]
    for cls in sorted(set(POOLINGS.values()), key=lambda c: c.__name__):
        args = ", ".join(f"`{n}`" + ("" if p.default is inspect.Parameter.empty else f" = {show(p.default)}")
                         for n, p in inspect.signature(cls.__init__).parameters.items()
                         if n not in ("self", *SIZE_ARGUMENTS) and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        rows.append(f"| `embedgrid.model.pooling.{cls.__name__}` | {args or '(none)'} |")
    return rows


def preset_table(group: str) -> list[str]:
    rows = [f"| `{group}=` | what | sets |", "|---|---|---|"]
    for name, header, data in presets(group):
        comments = yaml_comments(CONF / group / f"{name}.yaml")[1]
        inherits = []
        for entry in data.get("defaults", []):
            if isinstance(entry, dict):
                (key, value), = entry.items()
                inherits.append(f"`{key.removeprefix('override /')}={value}`")
            elif entry != "_self_":
                inherits.append(f"everything of `{group}={entry}`")
        data = {k: v for k, v in data.items() if k != "defaults"}
        sets = "<br>".join(inherits + [f"`{k}`: {show(v)}" + (f" ({comments[k]})" if k in comments else "")
                                  for k, v in flat(data).items() if k]) or "(nothing)"
        rows.append(f"| `{name}` | {cell(header)} | {cell(sets)} |")
    return rows


def render() -> str:
    chosen_presets = group_defaults()
    top_comments = yaml_comments(CONF / "config.yaml")[1]
    top = yaml.safe_load((CONF / "config.yaml").read_text())
    out = ["# Configuration reference", "",
           "Generated from the typed schema (`embedgrid/grid/schema.py`, `embedgrid/train/config.py`, "
           "`embedgrid/evaluate/config.py`, `embedgrid/model/spec.py`) and the presets in `conf/` by "
           "`python -m embedgrid.grid.reference > docs/configuration.md`; a test fails when this page is stale.",
           "",
           "Every key can be set on the command line (`key=value`, `group.key=value`) and swept with `-m` "
           "(`key=a,b`). *Schema default* is the dataclass's value (`???`: a preset must set it); *default cell* "
           "is what `python launch.py` uses, after `conf/config.yaml` picked "
           + ", ".join(f"`{g}={p}`" for g, p in chosen_presets.items()) + ". Unknown keys and wrong types fail "
           "when the config is composed; choices and ranges are checked before any job starts, naming the key, "
           "the value and the valid choices.", "", "## Top-level keys", ""]
    scalars = [f for f in dataclasses.fields(GridSchema) if f.name not in chosen_presets
               and f.name not in ("train", "lora", "eval", "logger", "perceiver", "model", "pooling", "attention", "data")]
    Top = dataclasses.make_dataclass("Top", [(f.name, f.type, f) for f in scalars])
    out += keys_table("", Top, top, top_comments)
    out += ["", "`instruction_join`: `template` wraps a text that has an instruction in `instruction_template` "
            "(the part before `{text}` tokenized on its own, so the instruction is an exact token prefix); "
            "`paper` joins instruction and text with no separator and tokenizes the joined string, as the "
            "reference code did."]
    groups = [("model", "ModelConfig"), ("pooling", "PoolingConfig"), ("perceiver", "PerceiverConfig"),
              ("attention", "AttentionConfig"), ("train", "TrainConfig"), ("lora", "LoraSpec"),
              ("data", "DataConfig"), ("eval", "EvalConfig"), ("logger", None)]
    types = {f.name: f.type for f in dataclasses.fields(GridSchema)}
    schema_classes = {f.name: type(f.default_factory()) for f in dataclasses.fields(GridSchema)
                      if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory())}
    for group, _ in groups:
        cls = schema_classes.get(group)
        preset = chosen_presets.get(group)
        chosen = (yaml.safe_load((CONF / group / f"{preset}.yaml").read_text()) or {}) if preset else {}
        comments = {**(field_comments(cls) if cls else {}),
                    **(yaml_comments(CONF / group / f"{preset}.yaml")[1] if preset else {})}
        title = f"## `{group}`" + (f" (default `{group}={preset}`)" if preset else " (no group file: keys only)")
        out += ["", title, ""]
        if cls:
            out += [f"Schema: `{cls.__module__}.{cls.__name__}`.", ""]
            out += keys_table(group, cls, chosen, comments)
        else:
            out += [f"Type: {type_name(types[group])}.", ""]
        if group == "pooling":
            out += ["", "`pooling.head` is `{_target_: <class>, **its keyword arguments}`; only these classes "
                    "can be named:", ""] + pooling_heads()
        if group == "data":
            from embedgrid.data.mixture import SOURCE_KINDS

            kinds = {f"{DATA_PREFIX}{module}.{name}": kind for kind, wrapper in SOURCE_KINDS.items()
                     for name in wrapper.__code__.co_names if name.endswith("_rows")
                     for module in ("jsonl", "hf", "wordnet") if hasattr(import_module(DATA_PREFIX + module), name)}
            targets = sorted({d.get("loader", {}).get("_target_") for _, _, d in presets("data")} - {None} | set(kinds))
            out += ["", f"`data.loader` is `{{_target_: <function>, **its arguments}}`; the target must lie in "
                    f"`{DATA_PREFIX}*`. The loaders, and the `kind` of a `data=mixture` source that uses each "
                    "(a source takes its loader's arguments, plus `weight`):", "",
                    "| `data.loader._target_` | mixture `kind` | arguments |", "|---|---|---|"]
            out += [f"| `{t}` | {f'`{kinds[t]}`' if t in kinds else ''} | {callable_arguments(t)} |" for t in targets]
        if group == "logger":
            out += ["", "`logger` is `{_target_: <class>, **its arguments}`; the target must be one of:", "",
                    "| `logger._target_` | arguments (the cell gives " +
                    ", ".join(f"`{a}`" for a in LOGGER_RUNTIME_ARGUMENTS) + ") |", "|---|---|"]
            out += [f"| `{t}` | {callable_arguments(t, LOGGER_RUNTIME_ARGUMENTS) or '(none)'} |"
                    for t in LOGGER_TARGETS]
        if (CONF / group).is_dir():
            out += ["", f"Presets (`conf/{group}/`):", ""] + preset_table(group)
    out += ["", "## Other config groups", ""]
    for group in OTHER_GROUPS:
        out += [f"### `{group}`", ""] + preset_table(group) + [""]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
