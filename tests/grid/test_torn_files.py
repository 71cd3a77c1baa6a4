"""No torn file strands a cell: every file a cell reads back is checked, and a torn one is named, moved aside
(``<file>.corrupt-<time>``) and rebuilt -- mteb results by re-evaluating, scores from the mteb cache, ``model/``
from the last checkpoint."""
from __future__ import annotations

import errno
import json
import shutil

import pytest

from tests.helpers import TINY, launch

CELL = [*TINY, "train.max_steps=2", "train.checkpoint_every=2"]


@pytest.fixture(scope="module")
def done_cell(tmp_path_factory):
    """One finished tiny cell, trained and evaluated once for the module; tests work on copies."""
    from embedgrid.grid.cell import run
    from tests.helpers import compose_config

    cell = tmp_path_factory.mktemp("done") / "cell"
    assert run(compose_config(CELL), cell).status == "done"
    return cell


@pytest.fixture
def cell(done_cell, tmp_path):
    copy = tmp_path / "cell"
    shutil.copytree(done_cell, copy)
    return copy


def _truncate(path, keep=None):
    data = path.read_bytes()
    path.write_bytes(data[:keep if keep is not None else len(data) // 2])


def _mteb_result(cell):
    return next(p for p in (cell / "mteb").rglob("LeeDocumentSTS.json"))


def test_mteb_result_writes_are_atomic(done_cell, tmp_path, monkeypatch):
    """A full disk while mteb writes a result leaves the previous file, never a torn one."""
    import mteb.results.task_result as task_result

    from embedgrid.evaluate.run import atomic_task_results

    atomic_task_results()
    result = task_result.TaskResult.from_disk(_mteb_result(done_cell))
    target = tmp_path / "LeeDocumentSTS.json"
    result.to_disk(target)
    before = target.read_bytes()

    def full_disk(obj, f, **kwargs):
        f.write('{"dataset_revision": "abc", "task_na')
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(task_result.json, "dump", full_disk)
    with pytest.raises(OSError):
        result.to_disk(target)
    assert target.read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp")), "temp file left behind"


def test_a_torn_mteb_result_is_named_moved_aside_and_reevaluated(done_cell, tmp_path, caplog):
    """The one checked read of a cached result (embedgrid.evaluate.run.cached_result)."""
    import mteb

    from embedgrid.evaluate.run import cached_result

    shutil.copytree(done_cell / "mteb", tmp_path / "mteb")
    torn = _mteb_result(tmp_path)
    _truncate(torn, 4096 // 64)
    cache = mteb.ResultCache(str(tmp_path / "mteb"))
    meta = json.loads((torn.parent / "model_meta.json").read_text())
    assert cached_result(cache, "LeeDocumentSTS", meta["name"], meta["revision"]) is None
    assert not torn.exists() and len(list(torn.parent.glob("LeeDocumentSTS.json.corrupt-*"))) == 1
    assert str(torn) in caplog.text


@pytest.mark.parametrize("name", ["mteb", "scores.json", "category_scores.json"])
def test_a_torn_result_file_is_rebuilt_and_the_cell_finishes(cell, name):
    """A full disk during evaluation left a torn file: the relaunch names it, moves it aside, rebuilds it."""
    from embedgrid.errors import TornFile
    from embedgrid.grid.cell import run
    from embedgrid.grid.celldir import CellDir
    from embedgrid.grid.plan import resolve_plan
    from tests.helpers import compose_config

    scores = json.loads((cell / "scores.json").read_text())
    torn = _mteb_result(cell) if name == "mteb" else cell / name
    _truncate(torn)
    with pytest.raises(TornFile, match=str(torn)):  # the plan (and a dry run) names it
        CellDir(cell).preflight(resolve_plan(compose_config(CELL)))
    outcome = run(compose_config(CELL), cell)
    assert outcome.status == "done"
    assert json.loads(torn.read_text())  # rebuilt, valid
    assert len(list(torn.parent.glob(f"{torn.name}.corrupt-*"))) == 1
    assert {t: e["main_score"] for t, e in outcome.scores.items()} == \
        {t: e["main_score"] for t, e in scores.items()}


@pytest.mark.parametrize("name", ["pooling.safetensors", "adapter/adapter_model.safetensors", "identity.json"])
def test_a_torn_model_file_is_detected_before_loading_and_rebuilt_from_the_last_checkpoint(cell, name):
    from safetensors.torch import load_file

    from embedgrid.errors import TornFile
    from embedgrid.grid.cell import run
    from embedgrid.grid.celldir import CellDir
    from embedgrid.grid.plan import resolve_plan
    from tests.helpers import compose_config

    weights = load_file(cell / "model" / "pooling.safetensors")
    identity = json.loads((cell / "model" / "identity.json").read_text())
    assert set(identity["files"]) >= {"pooling.safetensors", "encoder.json", "adapter/adapter_model.safetensors"}
    _truncate(cell / "model" / name, 1 if name.endswith(".json") else None)
    with pytest.raises(TornFile, match="model"):
        CellDir(cell).preflight(resolve_plan(compose_config(CELL)))
    outcome = run(compose_config(CELL), cell)
    assert outcome.status == "done" and not outcome.skipped
    assert len(list(cell.glob("model.corrupt-*"))) == 1
    rebuilt = load_file(cell / "model" / "pooling.safetensors")
    assert all(bool((rebuilt[k] == weights[k]).all()) for k in weights)  # the final checkpoint's weights
    assert CellDir(cell).model_problem() is None
    assert json.loads((cell / "cell.json").read_text())["train"]["start_step"] == 2  # resumed, not retrained


def test_a_stale_temp_file_is_removed_on_the_next_claim(cell):
    from embedgrid.grid.cell import run
    from tests.helpers import compose_config

    stale = [cell / "model" / ".encoder.json.x1y2.tmp", cell / ".cell.json.abc.tmp"]
    for path in stale:
        path.write_text("{")
    assert run(compose_config(CELL), cell).skipped
    assert not any(p.exists() for p in stale)


@pytest.mark.slow
def test_a_sweep_with_one_torn_cell_among_healthy_ones_runs_them_all(done_cell, tmp_path, launch_env):
    from embedgrid.grid.cellid import cell_name
    from tests.helpers import compose_config
    from tests.helpers.grid import dry_run_states

    sweep = tmp_path / "sweep"
    torn_cell = sweep / cell_name(compose_config(CELL))
    shutil.copytree(done_cell, torn_cell)
    _truncate(torn_cell / "scores.json")
    args = ["-m", *CELL, "pooling=mean,eos_last", f"hydra.sweep.dir={sweep}", "analyze=false"]
    dry = launch([*args, "dry_run=true"], launch_env)
    assert sorted(dry_run_states(dry.stdout)) == ["corrupt", "new"] and str(torn_cell / "scores.json") in dry.stdout
    assert not list(torn_cell.glob("*.corrupt-*")), "a dry run moved a file"
    launch(args, launch_env)
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["counts"]["done"] == 2 and summary["counts"]["failed"] == 0
    assert json.loads((torn_cell / "scores.json").read_text())
