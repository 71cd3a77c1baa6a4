"""Names are names: a value that becomes a path component never leaves its sweep, and nothing is written through
a symbolic link inside a cell directory."""
from __future__ import annotations

import json

import pytest

from tests.helpers import TINY, launch


@pytest.mark.parametrize("override", ["model.name=../../trav_escape", "pooling.name=a/b", "attention.name=..",
                                      "grid=../../../../tmp/grid_escape", "model.name=.hidden"])
def test_a_name_that_would_leave_its_directory_is_refused_naming_key_value_and_pattern(compose, override):
    from embedgrid.errors import ConfigError
    from embedgrid.grid.cellid import SAFE_NAME, cell_name
    from embedgrid.grid.schema import check

    key, value = override.split("=", 1)
    cfg = compose([*TINY, override])
    with pytest.raises(ConfigError) as raised:
        check(cfg)
    assert f"{key}={value!r}" in str(raised.value) and SAFE_NAME.pattern in str(raised.value)
    if key != "grid":
        with pytest.raises(ConfigError):
            cell_name(cfg)


def test_a_cell_dir_outside_the_sweep_is_refused(tmp_path):
    from embedgrid.errors import ConfigError
    from embedgrid.grid.sweeper import check_inside

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    check_inside(sweep / "tiny-mean-causal-seed0-abc", sweep)
    with pytest.raises(ConfigError, match="outside the sweep directory"):
        check_inside(sweep / ".." / "escape", sweep)
    (sweep / "linked").symlink_to(tmp_path)
    with pytest.raises(ConfigError, match="outside the sweep directory"):
        check_inside(sweep / "linked" / "cell", sweep)


@pytest.mark.parametrize("name", ["launch.log", "cell.json", "model"])
def test_a_symlink_inside_a_cell_dir_is_refused_naming_it(compose, tmp_path, name):
    from embedgrid.errors import CellConflict
    from embedgrid.grid.celldir import CellDir
    from embedgrid.grid.plan import resolve_plan

    cell, target = tmp_path / "cell", tmp_path / "target"
    cell.mkdir()
    target.write_text("precious\n")
    (cell / "cell.json").write_text(json.dumps({"status": "failed"})) if name != "cell.json" else None
    (cell / name).symlink_to(target)
    with pytest.raises(CellConflict, match=str(cell / name)):
        CellDir(cell).preflight(resolve_plan(compose(TINY)))
    assert target.read_text() == "precious\n"


@pytest.mark.slow
def test_a_traversing_model_name_writes_nothing_outside_the_sweep(tmp_path, launch_env):
    sweep = tmp_path / "a" / "b" / "x"
    proc = launch(["-m", *TINY, "model.name=../../trav_escape", f"hydra.sweep.dir={sweep}"], launch_env,
                  check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "model.name='../../trav_escape'" in out, out[-2000:]
    assert not list(tmp_path.rglob("*trav_escape*"))


@pytest.mark.slow
def test_a_symlinked_launch_log_is_not_appended_to(compose, tmp_path, launch_env):
    from embedgrid.grid.cellid import cell_name

    cell, target = tmp_path / "cell", tmp_path / "target.txt"
    cell.mkdir()
    target.write_text("precious\n")
    (cell / "launch.log").symlink_to(target)
    proc = launch([*TINY, f"hydra.run.dir={cell}"], launch_env, check=False)
    assert proc.returncode != 0 and str(cell / "launch.log") in proc.stdout + proc.stderr
    assert target.read_text() == "precious\n" and not (cell / "cell.json").exists()
    assert cell_name(compose(TINY))  # the ordinary name composes
