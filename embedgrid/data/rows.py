"""The training row every source produces, and the small contract between data sources and the training loop.

A source is a ``Sequence[Row]`` (``len`` and ``source[i]``): a list, or a lazy one that reads rows from disk on
access (``JsonlRows``, ``HfRows``). The loop never holds more than a batch of rows; the order of rows is
``train.batches.batch_rows`` (a pure function of (seed, step), so exact resume needs only the step). A source
may instead define ``batch(batch_size, step, seed) -> list[Row]`` with the same purity (``Mixture``). Sources
validate every row when they are built and record ``fewest_negatives`` (count, where) so that a row with too
few hard negatives is refused before the first step, naming its file and line.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Row:
    query: str
    positive: str
    negatives: tuple[str, ...] = field(default_factory=tuple)
    instruction: str | None = None

    @classmethod
    def from_mapping(cls, data: dict, where: str) -> "Row":
        """Validate one raw record; ``where`` (e.g. ``file.jsonl:12``) goes into every error message."""
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected an object with 'query' and 'positive', got {type(data).__name__}")
        unknown = set(data) - {"query", "positive", "negatives", "instruction"}
        if unknown:  # first: a misspelt key would otherwise read as a missing one
            raise ValueError(f"{where}: unknown fields {sorted(unknown)}; valid: query, positive, negatives, "
                             "instruction")
        for key in ("query", "positive"):
            if not isinstance(data.get(key), str) or not data[key].strip():
                raise ValueError(f"{where}: '{key}' must be a non-empty string, got {data.get(key)!r}")
        negatives = data.get("negatives", [])
        if isinstance(negatives, str):
            negatives = [negatives]
        if not isinstance(negatives, list) or not all(isinstance(n, str) for n in negatives):
            raise ValueError(f"{where}: 'negatives' must be a list of strings, got {negatives!r}")
        instruction = data.get("instruction")
        if instruction is not None and not isinstance(instruction, str):
            raise ValueError(f"{where}: 'instruction' must be a string, got {instruction!r}")
        return cls(data["query"], data["positive"], tuple(negatives), instruction)


class FewestNegatives:
    """Running minimum of hard negatives per row over a source, with where the first such row is."""

    def __init__(self):
        self.count: int | None = None
        self.where: str | None = None

    def add(self, count: int, where: str) -> None:
        if self.count is None or count < self.count:
            self.count, self.where = count, where

    def as_tuple(self) -> tuple[int, str] | None:
        return None if self.count is None else (self.count, self.where)


def fewest_negatives(rows) -> tuple[int, str] | None:
    """(fewest hard negatives of any row, where that row is) for any source; ``None`` when it has no rows."""
    if hasattr(rows, "fewest_negatives"):
        return rows.fewest_negatives()
    fewest = FewestNegatives()
    for index, row in enumerate(rows):
        fewest.add(len(row.negatives), f"row {index} ({row.query[:40]!r})")
    return fewest.as_tuple()


def require_negatives(rows, num_negatives: int) -> None:
    """Refuse a source with a row of fewer than ``num_negatives`` hard negatives, before training starts."""
    fewest = fewest_negatives(rows)
    if fewest is None:
        raise ValueError("no training rows")
    count, where = fewest
    if count < num_negatives:
        raise ValueError(
            f"{where}: {count} hard negatives, but train.num_negatives={num_negatives} needs {num_negatives} on "
            f"every row; give that row (and every such row) 'negatives', drop it, or set "
            f"train.num_negatives={count}")


class IndexedRows(Sequence):
    """Rows read on demand by index (lazy file-backed sources): slices and negative indices as a list takes them;
    subclasses give ``__len__`` and ``read(index)`` for an index already in range."""

    def read(self, index: int) -> Row:
        raise NotImplementedError

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} of {len(self)}")
        return self.read(index)
