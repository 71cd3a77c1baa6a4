"""What can be checked of a cell's inputs without training, before any job: local data files exist, are readable
and their first rows parse; hub models and datasets resolve (offline: they are in the local Hugging Face cache);
eval.truncate_dim fits the encoder's dimension where the config (or a config.json at hand) states it.

Each problem is a :class:`Blocker` (key, value, why, fix); one cause shared by many cells of a sweep is reported
once (``describe``).
"""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from embedgrid.assets import tiny_checkpoint

from embedgrid.data.fingerprint import (FILE_TARGETS, HF_TARGET, MIXTURE_TARGET, SOURCE_TARGETS, is_local,
                                        is_unresolved, offline)
from embedgrid.data.rows import Row
from embedgrid.errors import InputUnavailable
from embedgrid.grid.cellid import inputs

FIRST_ROWS = 5
BLOCKED = "blocked"  # a planned cell whose inputs are unavailable (dry run: listed; a real sweep: stops first)
INPUT_KEYS = {"model": "model.checkpoint", "data": "data.loader.path"}


@dataclass(frozen=True)
class Blocker:
    key: str
    value: str
    why: str
    fix: str

    def short(self) -> str:
        return f"{self.key}={self.value}: {self.why}"

    def message(self) -> str:
        return f"{self.short()}\n  fix: {self.fix}"


def _key(name: str) -> str:
    if name.startswith("data.sources."):
        return f"data.loader.sources.{name[len('data.sources.'):]}.path"
    return INPUT_KEYS.get(name, name)


def _hub_blocker(key: str, repo: str, revision: str, dataset: bool) -> Blocker:
    kind = "--repo-type dataset " if dataset else ""
    local = "data.loader.path=/path/to/a/local/copy (.parquet, .jsonl or a save_to_disk directory)" if dataset \
        else "model.checkpoint=/path/to/a/local/copy"
    fetch = f"`hf download {kind}{repo} --revision {revision}` (or `huggingface-cli download ...`)"
    if offline():
        why = f"not in the local Hugging Face cache at revision {revision}, and HF_HUB_OFFLINE=1 forbids downloading"
        fix = f"fetch it once where there is network: {fetch}; or point {key.split('=')[0]} at a local copy: {local}"
    else:
        why = (f"revision {revision} could not be resolved on the hub (no network, no such repository, or a "
               "private one without HF_TOKEN) and is not in the local cache")
        fix = f"check the id, set HF_TOKEN for a private repository, fetch it with {fetch}, or use {local}"
    return Blocker(key, repo, why, fix)


def _input_blockers(cfg) -> list[Blocker]:
    out = []
    for source in inputs(cfg):
        fingerprint = source.fingerprint if source.mutable else None
        if fingerprint is None or not is_unresolved(fingerprint):
            continue
        key = _key(source.name)
        if fingerprint.startswith("missing:"):
            out.append(Blocker(key, source.source, "does not exist",
                               f"point {key} at an existing {'file' if key.startswith('data') else 'path'} "
                               "(relative paths are resolved from the launch directory)"))
        elif fingerprint.startswith("unreadable:"):
            out.append(Blocker(key, source.source, f"cannot be read {fingerprint.rsplit(' (', 1)[-1].rstrip(')')}",
                               "make it readable by the user who launches the sweep"))
        else:
            revision = fingerprint.rsplit("@", 1)[1].removesuffix("?unresolved")
            out.append(_hub_blocker(key, source.source, revision, dataset=source.name != "model"))
    return out


def _loader_specs(loader: dict, key: str = "data.loader"):
    """(config key of the source, loader target, its arguments) of every source a loader reads."""
    target = str(loader.get("_target_", ""))
    if target == MIXTURE_TARGET:
        for name, spec in (loader.get("sources") or {}).items():
            spec = dict(spec or {})
            kind = spec.pop("kind", None)
            if kind in SOURCE_TARGETS:
                yield f"{key}.sources.{name}", SOURCE_TARGETS[kind], spec
    else:
        yield key, target, loader


def _first_rows_problem(target: str, spec: dict, num_negatives: int = 0) -> str | None:
    """Why the first rows of a local jsonl/parquet source do not parse (or carry fewer than ``num_negatives``
    hard negatives), or None."""
    path = Path(str(spec.get("path"))).expanduser()
    if not path.is_file():
        return None  # missing paths are named by _input_blockers; directories and hub ids are not previewed here
    columns = spec.get("columns") if target == HF_TARGET or target.endswith("parquet_rows") else None
    columns = dict(columns or {"query": "query", "positive": "positive", "negatives": "negatives"})
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            records = next(pq.ParquetFile(path).iter_batches(batch_size=FIRST_ROWS), None)
            records = records.to_pylist() if records is not None else []
            wanted = [c for v in columns.values() for c in (v if isinstance(v, list) else [v])]
            present = set(pq.ParquetFile(path).schema_arrow.names)
            if missing := [c for c in wanted if c not in present]:
                return f"has no columns {missing}; available: {sorted(present)}"
            for number, record in enumerate(records, start=1):
                where = f"{path} row {number}"
                _enough(Row.from_mapping(_mapped(record, columns), where), num_negatives, where)
        elif target in FILE_TARGETS or path.suffix == ".jsonl":
            seen = 0
            with open(path, "rb") as f:
                for number, raw in enumerate(f, start=1):
                    if not raw.strip():
                        continue
                    where = f"{path}:{number}"
                    try:
                        record = json.loads(raw)
                    except (json.JSONDecodeError, UnicodeDecodeError) as error:
                        return f"{where}: not a JSON object ({getattr(error, 'msg', error)})"
                    _enough(Row.from_mapping(record if target in FILE_TARGETS else _mapped(record, columns), where),
                            num_negatives, where)
                    seen += 1
                    if seen >= FIRST_ROWS:
                        break
            if not seen:
                return "has no rows"
    except ValueError as error:
        return str(error)
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    return None


def _enough(row: Row, num_negatives: int, where: str) -> None:
    if len(row.negatives) < num_negatives:
        raise ValueError(f"{where}: {len(row.negatives)} hard negatives, but train.num_negatives={num_negatives} "
                         "needs that many on every row (give rows 'negatives', or lower train.num_negatives)")


def _mapped(record: dict, columns: dict) -> dict:
    if not isinstance(record, dict):
        return record
    out = {}
    for field, column in columns.items():
        if isinstance(column, list):
            out[field] = [record.get(c) for c in column if record.get(c) is not None]
        elif record.get(column) is not None:
            out[field] = record[column]
    return out


def blockers(cfg) -> list[Blocker]:
    """Every problem with the cell's inputs that would stop it; empty when it can start."""
    found = _input_blockers(cfg) + _dimension_blockers(cfg)
    if "train" in cfg and int(cfg.train.max_steps or 0) > 0 and "loader" in cfg.get("data", {}):
        loader = OmegaConf.to_container(cfg.data.loader, resolve=True)
        named = {b.key for b in found}
        for key, target, spec in _loader_specs(loader):
            if f"{key}.path" in named or not isinstance(spec.get("path"), str) or not is_local(spec["path"]):
                continue
            problem = _first_rows_problem(target, spec, int(cfg.train.get("num_negatives") or 0))
            if problem:
                fix = ("give every row enough 'negatives', or lower train.num_negatives" if "hard negatives" in problem
                       else "fix the file (rows are {query, positive, negatives?, instruction?}) or map its columns "
                       "with data.loader.columns")
                found.append(Blocker(f"{key}.path", spec["path"], f"first rows: {problem}", fix))
    return found


def planned_dim(cfg) -> tuple[int, str] | None:
    """The encoder's output dimension and the key that sets it, known without building the model: the pooling
    head's ``output_dim``, else the backbone's hidden size (the tiny model's argument, or ``hidden_size`` in the
    config.json of a local checkpoint or of a hub checkpoint in the local cache). None where only the loaded model
    tells (a packaged checkpoint not converted yet, a hub model not downloaded): the cell checks it after loading."""
    head = OmegaConf.select(cfg, "pooling.head")
    output_dim = OmegaConf.to_container(head, resolve=True).get("output_dim") if head is not None else None
    if output_dim:
        return int(output_dim), "pooling.head.output_dim"
    checkpoint = OmegaConf.select(cfg, "model.checkpoint")
    if checkpoint is None:
        return None
    checkpoint = OmegaConf.to_container(checkpoint, resolve=True) if OmegaConf.is_config(checkpoint) else checkpoint
    if isinstance(checkpoint, dict):
        if str(checkpoint.get("_target_", "")).endswith("tiny_checkpoint"):
            default = inspect.signature(tiny_checkpoint).parameters["hidden_size"].default
            return int(checkpoint.get("hidden_size", default)), "model.checkpoint.hidden_size"
        return None
    config = _checkpoint_config(str(checkpoint), OmegaConf.select(cfg, "model.revision"))
    hidden = config.get("hidden_size") or (config.get("text_config") or {}).get("hidden_size")
    return (int(hidden), f"hidden_size of {checkpoint}'s config.json") if isinstance(hidden, int) else None


def _checkpoint_config(checkpoint: str, revision: str | None) -> dict:
    """A local checkpoint's config.json, or a hub checkpoint's from the local cache (never downloaded); {} if
    there is none at hand or it does not parse."""
    if is_local(checkpoint):
        path = Path(checkpoint).expanduser() / "config.json"
    else:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(checkpoint, "config.json", revision=revision or None)
        if not isinstance(found, str):
            return {}
        path = Path(found)
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _dimension_blockers(cfg) -> list[Blocker]:
    truncate = OmegaConf.select(cfg, "eval.truncate_dim")
    if truncate is None:
        return []
    known = planned_dim(cfg)
    if known is None or int(truncate) <= known[0]:
        return []
    dim, source = known
    return [Blocker("eval.truncate_dim", str(truncate), f"is larger than the encoder's dimension {dim} ({source})",
                    f"choose eval.truncate_dim between 1 and {dim}, or null for all {dim} dimensions")]


def describe(found: list[Blocker], cells: int | None = None) -> str:
    """Each distinct cause once, with its fix."""
    unique = list(dict.fromkeys(found))
    head = f"{len(unique)} problem(s) with the inputs" + (f" of {cells} cell(s)" if cells else "")
    return "\n".join([head + "; nothing was run:"] + [b.message() for b in unique])


def check(cfg) -> None:
    """Raise InputUnavailable (every cause, once) when the cell cannot start."""
    found = blockers(cfg)
    if found:
        raise InputUnavailable(describe(found))
