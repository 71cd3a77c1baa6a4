"""Faults end in plain words: a failed write names its path and errno whatever library wrote, SIGTERM while
evaluating records `partial`, a done cell on a read-only file system is skipped, and a cell another sweep is
running is reported busy, not failed."""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.helpers import ROOT, TINY, compose_config, launch

ZERO_SHOT = [*TINY, "train.max_steps=0"]


def _torch_full_disk(monkeypatch, free: int):
    """torch.save as it fails on a full disk: a partial file and its own RuntimeError, errno lost."""
    import embedgrid.io
    import embedgrid.train.checkpoint as checkpoint

    def save(obj, path, *args, **kwargs):
        open(path, "wb").write(b"PK\x03\x04 half")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 78784 vs 78676")

    monkeypatch.setattr(checkpoint.torch, "save", save)
    monkeypatch.setattr(embedgrid.io, "free_bytes", lambda path: free)


def _save(tmp_path):
    from embedgrid.train.checkpoint import save_checkpoint

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return save_checkpoint(tmp_path / "checkpoints", model, optimizer, scheduler, step=1)


def test_a_library_error_on_a_full_disk_names_the_path_and_enospc(tmp_path, monkeypatch):
    from embedgrid.errors import WriteFailed

    _torch_full_disk(monkeypatch, free=0)
    with pytest.raises(WriteFailed) as raised:
        _save(tmp_path)
    message = str(raised.value)
    assert raised.value.errno == errno.ENOSPC and "No space left on device" in message
    assert "state.pt" in message and "unexpected pos" in message
    assert not list((tmp_path / "checkpoints").glob(".last.tmp*")), "temp checkpoint left behind"


def test_a_library_error_with_free_space_is_not_called_a_full_disk(tmp_path, monkeypatch):
    _torch_full_disk(monkeypatch, free=10 ** 12)
    with pytest.raises(RuntimeError, match="unexpected pos") as raised:
        _save(tmp_path)
    assert not isinstance(raised.value, OSError)


def test_an_oserror_without_a_path_gets_one(tmp_path):
    from embedgrid.errors import WriteFailed
    from embedgrid.io import atomic_write

    def write(tmp):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    with pytest.raises(WriteFailed, match=str(tmp_path / "scores.json")) as raised:
        atomic_write(tmp_path / "scores.json", write)
    assert raised.value.errno == errno.EDQUOT and raised.value.filename == str(tmp_path / "scores.json")


def test_sigterm_during_evaluation_records_partial(tmp_path, monkeypatch):
    import embedgrid.evaluate.run as evaluate
    from embedgrid.errors import Preempted
    from embedgrid.grid.cell import PARTIAL, run

    def sigterm(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises here
        raise AssertionError("SIGTERM did not stop the evaluation")

    monkeypatch.setattr(evaluate, "evaluate_encoder", sigterm)
    previous = signal.signal(signal.SIGTERM, lambda *a: None)  # keeps pytest alive whatever the cell does
    try:
        with pytest.raises(Preempted, match="SIGTERM during evaluation"):
            run(compose_config(ZERO_SHOT), tmp_path)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert json.loads((tmp_path / "cell.json").read_text())["status"] == PARTIAL


def _done_cell(cell_dir, overrides=ZERO_SHOT):
    """A cell directory that is done for ``overrides`` (record, scores under the current eval settings)."""
    from embedgrid.evaluate.run import settings_hash
    from embedgrid.grid.celldir import CellDir
    from embedgrid.grid.plan import resolve_plan
    from embedgrid.grid.schema import eval_config

    cfg = compose_config(overrides)
    settings = settings_hash(eval_config(cfg), {"instruction_template": cfg.instruction_template,
                                                "instruction_join": cfg.instruction_join})
    cell = CellDir(cell_dir)
    cell.path.mkdir(parents=True)
    cell.write_scores({t: {"category": "STS", "main_score": 0.5, "eval_settings": settings} for t in cfg.eval.tasks})
    cell.write_category_scores({"means": {"STS": 0.5}})
    cell.record(resolve_plan(cfg), status="done", seconds=1.0)
    return cell


def test_a_cell_another_process_runs_is_planned_busy_not_failed(tmp_path):
    from embedgrid.grid.celldir import CellDir
    from embedgrid.grid.plan import resolve_plan
    from embedgrid.grid.sweeper import BUSY, plan_cell

    cell = CellDir(tmp_path / "cell")
    with cell.lock():
        planned = plan_cell(["pooling=mean"], cell, resolve_plan(compose_config(ZERO_SHOT)), "corrupt")
    assert planned.state == BUSY and not planned.runnable and "another process" in planned.error


@pytest.mark.slow
def test_a_concurrent_sweeps_cell_is_reported_busy(tmp_path, launch_env):
    from embedgrid.grid.cellid import cell_name
    from embedgrid.grid.celldir import CellDir

    sweep = tmp_path / "sweep"
    mine = _done_cell(sweep / cell_name(compose_config([*ZERO_SHOT, "pooling=eos_last"])),
                      [*ZERO_SHOT, "pooling=eos_last"])
    theirs = CellDir(sweep / cell_name(compose_config(ZERO_SHOT)))
    with theirs.lock():  # the other sweep is running this cell
        proc = launch(["-m", *ZERO_SHOT, "pooling=mean,eos_last", f"hydra.sweep.dir={sweep}", "analyze=false"],
                      launch_env, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["counts"]["busy"] == 1 and summary["counts"]["failed"] == 0 and summary["counts"]["skipped"] == 1
    assert mine.state() == "done"


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
@pytest.mark.parametrize("dry_run", [False, True], ids=["relaunch", "dry_run"])
def test_a_done_cell_is_skipped_on_a_read_only_file_system(tmp_path, launch_env, dry_run):
    cell = _done_cell(tmp_path / "cell")
    before = sorted(p.name for p in cell.path.iterdir())
    script = (f"mount --bind {cell.path} {cell.path} && mount -o remount,ro,bind {cell.path} && "
              f"exec {sys.executable} {ROOT / 'launch.py'} " + " ".join(f"'{a}'" for a in
                                                                       [*ZERO_SHOT, f"hydra.run.dir={cell.path}",
                                                                        f"dry_run={str(dry_run).lower()}"]))
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind /tmp /tmp"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("mount namespaces are not available here")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=ROOT, env=launch_env, capture_output=True,
                          text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert ("[   done]" in out) if dry_run else ("skipped, already done" in out)
    assert sorted(p.name for p in cell.path.iterdir()) == before
