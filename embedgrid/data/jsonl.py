"""Rows from a JSONL file, read lazily: one pass validates every line and keeps only its byte offset.

Memory is 8 bytes per row (its byte offset), whatever the size of the texts; a row is parsed again,
by seek, when the training loop asks for it.
"""
from __future__ import annotations

import json
import os
from array import array
from pathlib import Path

import numpy as np

from embedgrid.data.rows import FewestNegatives, IndexedRows, Row

PROGRESS_MIN_BYTES = 64 << 20  # show a progress bar when indexing files larger than this


def _parse(raw: bytes, where: str) -> Row:
    try:
        record = json.loads(raw)
    except UnicodeDecodeError as error:
        raise ValueError(f"{where}: not UTF-8 ({error.reason})") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: invalid JSON ({error.msg})") from None
    return Row.from_mapping(record, where)


class JsonlRows(IndexedRows):
    """A JSONL file of ``{query, positive, negatives?, instruction?}`` as a lazy ``Sequence[Row]``.

    Every line is validated when the object is built (an error names ``file:line``); blank lines are skipped.
    The file must not change afterwards: a changed size or mtime is refused at the next read.
    """

    def __init__(self, path: str | os.PathLike, limit: int | None = None):
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise FileNotFoundError(f"data.path: {self.path} does not exist")
        stat = self.path.stat()
        self._stamp = (stat.st_size, stat.st_mtime_ns)
        starts = array("q")
        fewest = FewestNegatives()
        bar = None
        if stat.st_size >= PROGRESS_MIN_BYTES:
            from tqdm.auto import tqdm

            bar = tqdm(total=stat.st_size, desc=f"index {self.path.name}", unit="B", unit_scale=True, leave=False)
        offset = 0
        with open(self.path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                start, offset = offset, offset + len(raw)
                if bar is not None and number % 4096 == 0:
                    bar.update(offset - bar.n)
                if not raw.strip():
                    continue
                where = f"{self.path}:{number}"
                fewest.add(len(_parse(raw, where).negatives), where)
                starts.append(start)
                if limit and len(starts) >= limit:
                    break
        if bar is not None:
            bar.close()
        if not starts:
            raise ValueError(f"{self.path}: no rows")
        self._starts = np.frombuffer(starts, dtype=np.int64)
        self._fewest = fewest.as_tuple()
        self._handle = None
        self._pid = None

    def __len__(self) -> int:
        return len(self._starts)

    def fewest_negatives(self) -> tuple[int, str]:
        return self._fewest

    def where(self, index: int) -> str:
        """Row ``index`` as ``file@byte`` (line numbers are named at load, when every line is validated)."""
        return f"{self.path}@byte{int(self._starts[index])}"

    def _file(self):
        if self._handle is None or self._pid != os.getpid():  # a forked process gets its own handle
            self._handle, self._pid = open(self.path, "rb"), os.getpid()
        stat = os.fstat(self._handle.fileno())  # ~1 us; an edited file would shift every offset
        if (stat.st_size, stat.st_mtime_ns) != self._stamp:
            raise RuntimeError(f"{self.path} changed after it was indexed; relaunch to index it again")
        return self._handle

    def read(self, index: int) -> Row:
        f = self._file()
        f.seek(int(self._starts[index]))
        return _parse(f.readline(), self.where(index))

    def __getstate__(self):
        return {**self.__dict__, "_handle": None, "_pid": None}

    def __del__(self):
        if getattr(self, "_handle", None) is not None:
            self._handle.close()


def jsonl_rows(path: str, limit: int | None = None) -> JsonlRows:
    """Rows from a JSONL file of ``{query, positive, negatives?, instruction?}``; errors name file and line."""
    return JsonlRows(path, limit)
