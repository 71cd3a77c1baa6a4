"""Reading the cell-directory contract defensively: any file may be truncated, of the wrong shape or typed wrongly.

Each reader returns the usable part and a list of ``(path, reason)`` complaints; nothing here raises on content.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

Complaint = tuple[str, str]   # (file path, reason)

TEXT_FIELDS = ("cell", "grid", "status", "error", "config_hash")


class Unreadable(Exception):
    """The file cannot be parsed at all (truncated, not JSON, not UTF-8, nested too deeply)."""


def read_json(path: Path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError, RecursionError) as error:   # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise Unreadable(f"{type(error).__name__}: {error}") from None


def _type(value) -> str:
    return "null" if value is None else type(value).__name__


def cell_record(path: Path) -> tuple[dict | None, list[Complaint]]:
    """cell.json as a dict with only well-typed fields kept (None if it is no object at all)."""
    record = read_json(path)
    where = str(path)
    if not isinstance(record, dict):
        return None, [(where, f"expected a JSON object, got {_type(record)}")]
    complaints, clean = [], dict(record)
    for key in TEXT_FIELDS:
        value = record.get(key)
        if value is not None and not isinstance(value, str):
            complaints.append((where, f"'{key}' is {_type(value)} ({_short(value)}), expected a string; ignored"))
            clean.pop(key)
    for key in ("config", "design", "provenance", "versions"):
        value = record.get(key)
        if value is not None and not isinstance(value, dict):
            complaints.append((where, f"'{key}' is {_type(value)}, expected an object; ignored"))
            clean.pop(key)
    if "status" not in clean:
        complaints.append((where, "no string 'status'; the cell counts as status 'unknown'"))
    return clean, complaints


def task_scores(path: Path) -> tuple[list[dict], list[Complaint]]:
    """[{task, category, in_domain, score}] from scores.json; malformed entries are skipped with a complaint.

    ``score`` may be NaN only where the file holds a JSON number that is not finite (NaN, Infinity) or null:
    those stay in the table as missing scores. Strings, booleans and other shapes are malformed."""
    data = read_json(path)
    where = str(path)
    if not isinstance(data, dict):
        return [], [(where, f"expected a JSON object of tasks, got {_type(data)}")]
    rows, complaints = [], []
    for task, entry in sorted(data.items()):
        if not isinstance(entry, dict):
            complaints.append((where, f"task '{task}': entry is {_type(entry)}, expected an object; skipped"))
            continue
        if "main_score" not in entry:
            complaints.append((where, f"task '{task}': no 'main_score'; skipped"))
            continue
        value = entry["main_score"]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            complaints.append((where, f"task '{task}': main_score is {_type(value)} ({_short(value)}), expected a "
                                      f"number; skipped"))
            continue
        category = entry.get("category")
        if not isinstance(category, str) or not category:
            complaints.append((where, f"task '{task}': category is {_type(category)} ({_short(category)}), "
                                      f"expected a non-empty string; skipped"))
            continue
        in_domain = entry.get("in_domain", False)
        if not isinstance(in_domain, bool):
            complaints.append((where, f"task '{task}': in_domain is {_type(in_domain)} ({_short(in_domain)}), "
                                      f"expected true/false; counted as in-domain (kept out of the primary result)"))
            in_domain = True
        try:
            score = float(value) if value is not None else math.nan
        except OverflowError:   # an integer beyond float range
            complaints.append((where, f"task '{task}': main_score {_short(value)} is out of range; skipped"))
            continue
        score = score if math.isfinite(score) else math.nan
        rows.append({"task": str(task), "category": category, "in_domain": in_domain, "score": score,
                     "raw": value})
    return rows, complaints


def _short(value, limit: int = 40) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"
