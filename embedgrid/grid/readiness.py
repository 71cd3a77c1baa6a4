"""What can be checked of a cell's inputs without training, before any job: local data files exist, are readable
and their first rows parse; hub models and datasets resolve (offline: they are in the local Hugging Face cache).

Each problem is a :class:`Blocker` (key, value, why, fix); one cause shared by many cells of a sweep is reported
once (``describe``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

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
    found = _input_blockers(cfg)
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
