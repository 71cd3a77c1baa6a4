from __future__ import annotations

import json
from pathlib import Path

from embedgrid.data.rows import Row


def jsonl_rows(path: str, limit: int | None = None) -> list[Row]:
    """Rows from a JSONL file of ``{query, positive, negatives?, instruction?}``; errors name file and line."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"data.path: {path} does not exist")
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: invalid JSON ({error.msg})") from None
            rows.append(Row.from_mapping(record, f"{path}:{number}"))
            if limit and len(rows) >= limit:
                break
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows
