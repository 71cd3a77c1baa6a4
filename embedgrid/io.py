"""Atomic file writes (cellfiles.atomic, with write errors in plain words: path and errno) and checked reads (a torn
file is named)."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from cellfiles.atomic import TEMP_SUFFIX, current_umask
from cellfiles.atomic import atomic_write as shared_atomic_write
from cellfiles.atomic import write_json as shared_write_json
from embedgrid.errors import TornFile, WriteFailed

# Below this many free bytes a library's write error (torch's "unexpected pos", safetensors' I/O error) is
# reported as the full disk it is.
FULL_DISK_BYTES = 1 << 20


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename the temp file over ``path`` (``cellfiles.atomic.atomic_write``).

    If anything fails (a full disk), the temp file is removed, ``path`` is left as it was and the error leaves as
    WriteFailed naming the path and the errno (``write_errors``).
    """
    with write_errors(path):
        shared_atomic_write(path, write)


def free_bytes(path: str | os.PathLike) -> int | None:
    """Bytes available to this user on the file system holding ``path`` (None if unknown)."""
    try:
        stat = os.statvfs(path)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


@contextlib.contextmanager
def write_errors(path: str | os.PathLike):
    """Any error while writing ``path`` leaves as WriteFailed naming the path and the errno, whichever library
    raised it: an OSError keeps its errno; another error on a full file system (torch's ``unexpected pos``)
    becomes ENOSPC; other errors pass unchanged."""
    try:
        yield
    except WriteFailed:
        raise
    except OSError as error:
        if error.errno is None:
            raise
        raise WriteFailed(error.errno, f"{error.strerror or os.strerror(error.errno)} while writing {path}",
                          str(path)) from error
    except Exception as error:  # noqa: BLE001 - a library's own error type for a failed write
        free = free_bytes(Path(path).parent if not Path(path).is_dir() else path)
        if free is None or free >= FULL_DISK_BYTES:
            raise
        raise WriteFailed(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} while writing {path} ({free} bytes free; "
                          f"{type(error).__name__}: {error})", str(path)) from error


def write_json(path: str | os.PathLike, data: Any) -> None:
    with write_errors(path):
        shared_write_json(path, data)


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """The file's JSON, ``default`` if it does not exist; a truncated or undecodable file raises TornFile."""
    path = Path(path)
    if not path.exists():
        return default
    try:
        with open(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise TornFile(f"{path} is not valid JSON ({error})", path) from None


def atomic_dir(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_dir)`` then rename the temp directory to ``path`` (which must not exist): the
    directory is there complete or not at all. The temp directory is removed if anything fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent))
    try:
        write(tmp)
        os.chmod(tmp, 0o777 & ~current_umask())
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def move_aside(path: str | os.PathLike) -> Path:
    """Rename a torn file or directory to ``<name>.corrupt-<UTC time>`` beside it (kept for inspection)."""
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists() or aside.is_symlink():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    os.rename(path, aside)
    return aside


def file_integrity(directory: str | os.PathLike, skip: tuple[str, ...] = ()) -> dict[str, dict]:
    """``{relative path: {"size", "sha256"}}`` of every regular file under ``directory`` (sorted)."""
    directory = Path(directory)
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = path.relative_to(directory).as_posix()
        if rel in skip:
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        files[rel] = {"size": path.stat().st_size, "sha256": digest.hexdigest()}
    return files
