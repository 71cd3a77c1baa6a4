from __future__ import annotations

from embedgrid.data.rows import Row


def hf_rows(path: str, split: str = "train", columns: dict | None = None, name: str | None = None,
            revision: str | None = None, limit: int | None = None) -> list[Row]:
    """Rows from a Hugging Face hub dataset; ``columns`` maps row fields to dataset columns,
    e.g. ``{query: anchor, positive: pos, negatives: neg}`` (needs network or a populated HF cache)."""
    from datasets import load_dataset

    columns = dict(columns or {"query": "query", "positive": "positive", "negatives": "negatives"})
    dataset = load_dataset(path, name, split=split, revision=revision)
    missing = [c for c in columns.values() if c not in dataset.column_names]
    if missing:
        raise ValueError(f"dataset {path} has no columns {missing}; available: {dataset.column_names}")
    rows = []
    for index, record in enumerate(dataset):
        mapped = {field: record[column] for field, column in columns.items() if record.get(column) is not None}
        rows.append(Row.from_mapping(mapped, f"{path}[{split}][{index}]"))
        if limit and len(rows) >= limit:
            break
    return rows
