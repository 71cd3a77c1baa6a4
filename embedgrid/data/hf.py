"""Training rows from a Hugging Face dataset (hub id, ``save_to_disk`` directory, or a local data file)."""
from __future__ import annotations

from pathlib import Path

from embedgrid.data.fingerprint import hub_commit, is_local
from embedgrid.data.rows import FewestNegatives, IndexedRows, Row

FIELDS = ("query", "positive", "negatives", "instruction")
VALIDATE_CHUNK = 1000
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
    # a branch or tag is loaded by the commit it resolves to: the one the cell's identity and provenance name
    # (hub_commit is memoised per process), so a branch that moves cannot change the rows under the same cell
    commit = None if is_local(path) else hub_commit(path, revision, "dataset")
    return datasets.load_dataset(path, name, split=split, revision=commit or revision)


class HfRows(IndexedRows):
    """A dataset as a lazy ``Sequence[Row]``: rows are mapped from the (memory-mapped Arrow) dataset on access.

    Every record is validated when the object is built (errors name ``path[split][index]``).
    """

    def __init__(self, dataset, columns: dict, where: str, instruction: str | None = None):
        self.dataset, self.columns, self.where_prefix, self.instruction = dataset, columns, where, instruction
        fewest = FewestNegatives()
        index = 0
        for chunk in dataset.iter(batch_size=VALIDATE_CHUNK):
            for record in (dict(zip(chunk, values)) for values in zip(*chunk.values())):
                where_row = self.where(index)
                fewest.add(len(self._row(record, where_row).negatives), where_row)
                index += 1
        if not index:
            raise ValueError(f"{where}: no rows")
        self._fewest = fewest.as_tuple()

    def where(self, index: int) -> str:
        return f"{self.where_prefix}[{index}]"

    def _row(self, record: dict, where: str) -> Row:
        mapped = {}
        for field, column in self.columns.items():
            if field == "negatives" and isinstance(column, (list, tuple)):
                mapped[field] = [record[c] for c in column if record[c] is not None]
            elif record[column] is not None:
                mapped[field] = record[column]
        if self.instruction is not None:
            mapped.setdefault("instruction", self.instruction)
        return Row.from_mapping(mapped, where)

    def __len__(self) -> int:
        return len(self.dataset)

    def fewest_negatives(self) -> tuple[int, str]:
        return self._fewest

    def read(self, index: int) -> Row:
        return self._row(self.dataset[index], self.where(index))


def hf_rows(path: str, split: str = "train", columns: dict | None = None, name: str | None = None,
            revision: str | None = None, limit: int | None = None, instruction: str | None = None) -> HfRows:
    """Rows from a dataset; ``columns`` maps row fields to dataset columns, e.g.
    ``{query: anchor, positive: pos, negatives: [neg_1, neg_2]}`` (``negatives``: one list-valued column or
    several string columns). ``instruction`` is a constant instruction for every row without an instruction
    column. A hub id needs network or a populated HF cache. Rows are read lazily from the Arrow files
    ``datasets`` memory-maps, so memory does not grow with the dataset."""
    columns = dict(columns or {"query": "query", "positive": "positive", "negatives": "negatives"})
    columns = {k: v if isinstance(v, str) else list(v) for k, v in columns.items()}  # ListConfig from Hydra
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
    dataset = dataset.select_columns(list(dict.fromkeys(wanted)))
    if limit:
        dataset = dataset.select(range(min(limit, len(dataset))))
    return HfRows(dataset, columns, f"{path}[{split}]", instruction)


def parquet_rows(path: str, columns: dict | None = None, limit: int | None = None,
                 instruction: str | None = None) -> HfRows:
    """Rows from a local parquet file (through ``datasets``, memory-mapped), with ``hf_rows``' column mapping."""
    local = Path(path).expanduser()
    if not local.is_file() or local.suffix != ".parquet":
        raise FileNotFoundError(f"parquet source: {path} is not a .parquet file")
    return hf_rows(str(local), columns=columns, limit=limit, instruction=instruction)
