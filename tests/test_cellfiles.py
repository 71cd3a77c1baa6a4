"""cellfiles: the one atomic write and the cell-directory names, shared by embedgrid and analysis."""
from __future__ import annotations

import errno
import importlib
import json
import os

import pytest

from analysis import plots
from cellfiles import atomic, layout
from embedgrid import io
from embedgrid.errors import WriteFailed
from embedgrid.grid import celldir
from embedgrid.model import saved

collect = importlib.import_module("analysis.collect")  # the package exports a function of that name


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "scores.json"
    atomic.write_json(target, {"a": 1})

    def broken(tmp):
        with open(tmp, "w") as f:
            f.write('{"half": ')
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        atomic.atomic_write(target, broken)
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.json"]


def test_files_are_as_readable_as_any_file_and_json_ends_with_a_newline(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic.write_json(tmp_path / "deep" / "cell.json", {"path": tmp_path})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    assert path.read_text() == json.dumps({"path": str(tmp_path)}, indent=2) + "\n"


def test_embedgrid_io_delegates_and_names_the_path_and_errno(tmp_path):
    target = tmp_path / "cell.json"

    def full(tmp):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(WriteFailed) as failure:
        io.atomic_write(target, full)
    assert failure.value.errno == errno.ENOSPC and str(target) in str(failure.value)
    assert not list(tmp_path.iterdir())
    io.write_json(target, {"b": 2})
    assert target.read_text() == json.dumps({"b": 2}, indent=2) + "\n"


def test_the_grid_and_the_analysis_use_the_same_names():
    for name in ("CELL_FILE", "SCORES_FILE", "CATEGORY_SCORES_FILE", "MODEL_DIR", "CHECKPOINT_DIR", "MTEB_DIR",
                 "LOCK_FILE", "IDENTITY_FILE"):
        assert getattr(celldir, name) is getattr(layout, name), name
    assert (collect.CELL_FILE, collect.SCORES_FILE, collect.HYDRA_CONFIG) == (
        layout.CELL_FILE, layout.SCORES_FILE, layout.HYDRA_CONFIG)
    assert {layout.MODEL_DIR, layout.CHECKPOINT_DIR, layout.MTEB_DIR, layout.HYDRA_DIR} <= collect.PRUNE
    # the saved encoder's names belong to the model wing; the analysis keeps its own copy of the one it reads
    assert plots.POOLING_FILE == saved.POOLING_FILE
