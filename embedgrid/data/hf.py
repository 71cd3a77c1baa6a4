"""Training rows from a Hugging Face dataset (hub id, ``save_to_disk`` directory, or a local data file)."""
from __future__ import annotations

from pathlib import Path

from embedgrid.data.rows import Row

FIELDS = ("query", "positive", "negatives", "instruction")
FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def _load(path: str, name: str | None, split: str, revision: str | None):
    import datasets

    local = Path(path).expanduser()
    if local.is_dir() and ((local / "state.json").exists() or (local / "dataset_dict.json").exists()):
        dataset = datasets.load_from_disk(str(local))
        if isinstance(dataset, datasets.DatasetDict):
            if split not in dataset:
                raise ValueError(f"{path} has no split '{split}'; available: {', '.join(dataset)}")
            dataset = dataset[split]
        return dataset
    if local.is_file() and local.suffix in FILE_BUILDERS:
        return datasets.load_dataset(FILE_BUILDERS[local.suffix], data_files=str(local), split=split)
    return datasets.load_dataset(path, name, split=split, revision=revision)


def hf_rows(path: str, split: str = "train", columns: dict | None = None, name: str | None = None,
            revision: str | None = None, limit: int | None = None, instruction: str | None = None) -> list[Row]:
    """Rows from a dataset; ``columns`` maps row fields to dataset columns, e.g.
    ``{query: anchor, positive: pos, negatives: [neg_1, neg_2]}`` (``negatives``: one list-valued column or
    several string columns). ``instruction`` is a constant instruction for every row without an instruction
    column. A hub id needs network or a populated HF cache."""
    columns = dict(columns or {"query": "query", "positive": "positive", "negatives": "negatives"})
    unknown = sorted(set(columns) - set(FIELDS))
    if unknown:
        raise ValueError(f"data.loader.columns: unknown fields {unknown}; valid: {', '.join(FIELDS)}")
    for field in ("query", "positive"):
        if field not in columns:
            raise ValueError(f"data.loader.columns must map '{field}' to a column of {path}")
    dataset = _load(path, name, split, revision)
    wanted = [c for v in columns.values() for c in (v if isinstance(v, (list, tuple)) else [v])]
    missing = [c for c in wanted if c not in dataset.column_names]
    if missing:
        raise ValueError(f"dataset {path} has no columns {missing}; available: {dataset.column_names}")
    rows = []
    for index, record in enumerate(dataset):
        mapped = {}
        for field, column in columns.items():
            if field == "negatives" and isinstance(column, (list, tuple)):
                mapped[field] = [record[c] for c in column if record[c] is not None]
            elif record[column] is not None:
                mapped[field] = record[column]
        if instruction is not None:
            mapped.setdefault("instruction", instruction)
        rows.append(Row.from_mapping(mapped, f"{path}[{split}][{index}]"))
        if limit and len(rows) >= limit:
            break
    if not rows:
        raise ValueError(f"{path}[{split}]: no rows")
    return rows
