"""Sweeps that survive (basic launcher): the paper's grid, skip on relaunch, dry run, per-cell failures, bad input."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, TINY, launch  # noqa: F401
from tests.helpers.grid import GRID, PAPER_DESIGNS, cell_records, dry_run_states  # noqa: F401


@pytest.mark.slow
def test_paper_grid_runs_five_designs_then_skips_and_dry_run_shows_done(tmp_path, launch_env):
    sweep = tmp_path / "paper"
    args = ["-m", "experiment=paper_grid", *GRID, f"hydra.sweep.dir={sweep}"]

    dry = launch([*args, "dry_run=true"], launch_env)
    assert dry_run_states(dry.stdout) == ["new"] * 5
    assert not any(sweep.glob("*/cell.json")), "a dry run must not run cells"

    first = launch(args, launch_env)
    records = cell_records(sweep)
    assert {(r["design"]["pooling"], r["design"]["attention"]) for r in records.values()} == PAPER_DESIGNS
    for name, record in records.items():
        assert record["status"] == "done", name
        assert record["train"]["steps"] == 3
        assert "LeeDocumentSTS" in json.loads((sweep / name / "scores.json").read_text())
    assert "5 done, 0 skipped, 0 partial, 0 failed" in first.stdout
    assert f"analysis: python -m analysis {sweep}" in first.stdout, "the analysis runs after the sweep"
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["counts"]["done"] == 5

    started = time.perf_counter()
    again = launch(args, launch_env)
    assert "0 done, 5 skipped" in again.stdout
    assert time.perf_counter() - started < 60, "a relaunch of a finished grid must not rerun cells"
    assert all(r["attempts"] == 1 for r in cell_records(sweep).values())
    assert dry_run_states(launch([*args, "dry_run=true"], launch_env).stdout) == ["done"] * 5


@pytest.mark.slow
def test_failed_cell_is_recorded_and_does_not_stop_the_others(tmp_path, launch_env):
    sweep = tmp_path / "fail"
    # lr=1e30 passes every check before the job; its first update blows the weights up, so the second step's loss
    # is not finite: a real error raised inside the cell (NonFiniteLoss)
    args = ["-m", *GRID, "pooling=mean", "train.lr=1e-3,1e30", f"hydra.sweep.dir={sweep}", "analyze=false"]
    proc = launch(args, launch_env, check=False)
    assert proc.returncode != 0, "a grid with a failed cell must exit non-zero"
    assert "1 done, 0 skipped, 0 partial, 1 failed" in proc.stdout
    statuses = sorted(r["status"] for r in cell_records(sweep).values())
    assert statuses == ["done", "failed"]
    failed = next(r for r in cell_records(sweep).values() if r["status"] == "failed")
    assert "Traceback" in failed["traceback"] and failed["error"]
    states = dry_run_states(launch([*args, "dry_run=true"], launch_env).stdout)
    assert sorted(states) == ["done", "failed"]


def test_unwritable_sweep_dir_fails_before_any_cell(tmp_path, launch_env):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    proc = launch(["-m", *GRID, "pooling=mean,eos_last", f"hydra.sweep.dir={blocker}/sweep"], launch_env,
                  check=False, timeout=120)
    assert proc.returncode != 0
    assert "not writable" in proc.stdout + proc.stderr
    assert "Loading weights" not in proc.stdout + proc.stderr


def test_unknown_design_names_valid_choices(launch_env, tmp_path):
    proc = launch(["-m", *GRID, "design=eos_bidirectional", f"hydra.sweep.dir={tmp_path}"], launch_env,
                  check=False, timeout=120)
    assert proc.returncode != 0
    message = proc.stdout + proc.stderr
    assert "eos_bidirectional" in message
    for valid in ("eos_causal", "last_layer_causal", "multi_layer_bidirectional"):
        assert valid in message


def test_seeds_multiply_cells_and_dry_run_works_with_any_launcher(tmp_path, launch_env):
    proc = launch(["-m", "experiment=paper_grid", *GRID, "seed=1,2", "hydra/launcher=local_processes",
                   f"hydra.sweep.dir={tmp_path}", "dry_run=true"], launch_env, timeout=120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("  [")]
    assert len(lines) == 10 and dry_run_states(proc.stdout) == ["new"] * 10
    assert sum("-seed1-" in line for line in lines) == 5 and sum("-seed2-" in line for line in lines) == 5
    assert not (tmp_path / ".submitit").exists(), "a dry run submits nothing"


def test_jobs_sharing_a_cell_dir_are_refused_before_running(tmp_path, launch_env):
    proc = launch(["-m", *GRID, "eval.batch_size=8,16", f"hydra.sweep.dir={tmp_path}"], launch_env, check=False,
                  timeout=120)
    assert proc.returncode != 0
    assert "map to the same cell" in proc.stdout + proc.stderr and "eval.batch_size=8" in proc.stdout + proc.stderr
    assert not list(tmp_path.glob("*/cell.json"))
