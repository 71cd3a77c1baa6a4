"""The atomic write: a reader never sees a half-written file.

Every file a cell or a report writes goes through ``atomic_write``: the content is written to a temp file beside
the target (``.<name>.<random>.tmp``, same directory, so the rename is atomic) and renamed over it; if anything
fails the temp file is removed, the target is left as it was and the original error propagates.
``embedgrid.io`` adds the plain-word errors (path and errno) and the checked reads on top.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

TEMP_SUFFIX = ".tmp"  # a killed writer's leftovers match ``.*.tmp*`` (removed when the cell is next claimed)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temp file over ``path``; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp creates 0600; results are meant to be as readable as any file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # never let the cleanup hide the original error (e.g. ENOSPC)
            os.unlink(tmp)
        raise
    return path


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> Path:
    def _write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    return atomic_write(path, _write)


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Indented JSON with a final newline; values JSON cannot hold (a Path, a datetime) are written as text."""
    return write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def write_csv(path: str | os.PathLike, frame) -> Path:
    """A pandas DataFrame, without its index."""
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def save_figure(path: str | os.PathLike, figure) -> Path:
    """A matplotlib figure as PNG."""
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=130, bbox_inches="tight"))
