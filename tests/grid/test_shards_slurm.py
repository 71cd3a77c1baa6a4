"""Sharded evaluation (eval.shards=2) on the local one-node SLURM cluster: the scores of the unsharded cell, and
a shard whose job is cancelled mid-way is run again alone."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, launch, wait_for
from tests.helpers.grid import GRID, cell_records

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
SLURM = ["hydra/launcher=local_slurm"]
TASKS = ["LeeDocumentSTS", "WordSim353STS", "FoodSearchReranking"]
SHARDED = ["-m", *GRID, *SLURM, f"eval.tasks=[{','.join(TASKS)}]", "analyze=false"]


def _scores(sweep: Path) -> dict[str, float]:
    (path,) = sweep.glob("*/scores.json")
    return {task: entry["main_score"] for task, entry in json.loads(path.read_text()).items()}


def _arrays(sweep: Path) -> dict[str, list[str]]:
    """submitit's jobs by submission: an array's task folders (<array id>_<task>), a single job's (<job id>)."""
    arrays: dict[str, list[str]] = {}
    for submitted in sorted((sweep / ".submitit").glob("*/*_submitted.pkl")):
        array, _, task = submitted.parent.name.partition("_")
        arrays.setdefault(array, []).append(task)
    return arrays


def _status(sweep: Path) -> str | None:
    try:
        return next(iter(cell_records(sweep).values()))["status"]
    except (StopIteration, ValueError, KeyError):
        return None


def test_two_shards_give_the_unsharded_scores(tmp_path, slurm_env):
    started = time.monotonic()
    launch([*SHARDED, f"hydra.sweep.dir={tmp_path / 'plain'}"], slurm_env)
    plain_s = time.monotonic() - started
    started = time.monotonic()
    proc = launch([*SHARDED, "eval.shards=2", f"hydra.sweep.dir={tmp_path / 'sharded'}"], slurm_env)
    sharded_s = time.monotonic() - started
    print(f"\nlocal SLURM, tiny cell, {len(TASKS)} tasks: unsharded {plain_s:.1f} s, eval.shards=2 {sharded_s:.1f} s")
    assert "1 done, 0 skipped" in proc.stdout and "evaluation: 2 shard jobs" in proc.stdout
    (record,) = cell_records(tmp_path / "sharded").values()
    assert record["status"] == "done"
    assert sorted(t for shard in record["eval_shards"]["shards"] for t in shard) == sorted(TASKS)
    assert sorted(len(tasks) for tasks in _arrays(tmp_path / "sharded").values()) == [1, 2], \
        "one job for training, one array of 2 for the shards"
    assert (tmp_path / "plain").joinpath(*[p.name for p in (tmp_path / "sharded").glob("tiny-*")]).is_dir(), \
        "eval.shards must not change the cell's name"
    plain, sharded = _scores(tmp_path / "plain"), _scores(tmp_path / "sharded")
    assert sorted(plain) == sorted(sharded) == sorted(TASKS)
    for task in TASKS:
        assert sharded[task] == pytest.approx(plain[task], abs=1e-6), task
    assert json.loads(next((tmp_path / "sharded").glob("*/category_scores.json")).read_text()) == \
        json.loads(next((tmp_path / "plain").glob("*/category_scores.json")).read_text())

    again = launch([*SHARDED, "eval.shards=2", f"hydra.sweep.dir={tmp_path / 'sharded'}"], slurm_env)
    assert "0 done, 1 skipped" in again.stdout and "shard jobs" not in again.stdout


def test_a_cancelled_shard_is_run_again_alone(tmp_path, slurm_env):
    sweep = tmp_path / "killed"
    sweeping = subprocess.Popen([sys.executable, str(ROOT / "launch.py"), *SHARDED, "eval.shards=2",
                                 f"hydra.sweep.dir={sweep}"], cwd=ROOT, env=slurm_env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: _status(sweep) == "eval_pending", 300, "training to end", poll=0.1)
        (record,) = cell_records(sweep).values()
        victim_tasks = record["eval_shards"]["shards"][1]

        def running_shard():
            rows = subprocess.run(["squeue", "-h", "-o", "%i %t"], env=slurm_env, capture_output=True,
                                  text=True).stdout.split("\n")
            return next((job for job, state in (r.split() for r in rows if r.strip())
                         if job.endswith("_1") and state == "R"), None)

        victim = wait_for(running_shard, 120, "shard 1 to run", poll=0.1)
        subprocess.run(["scancel", victim], env=slurm_env, check=True)
        out, _ = sweeping.communicate(timeout=400)
    finally:
        if sweeping.poll() is None:
            sweeping.kill()
    assert sweeping.returncode == 0, out[-4000:]
    assert "evaluation: 1 shard jobs (again: 1 died)" in out, out[-4000:]
    assert "1 done, 0 skipped" in out
    (record,) = cell_records(sweep).values()
    assert record["status"] == "done" and sorted(_scores(sweep)) == sorted(TASKS)
    arrays = _arrays(sweep)
    assert sorted(len(tasks) for tasks in arrays.values()) == [1, 1, 2], arrays  # train, shards, the rerun
    rerun = out.split("(again: 1 died)", 1)[1]
    submitted = re.findall(r"eval_shard=\[([^\]]*)\]", rerun)
    assert submitted == [",".join(f"'{t}'" for t in victim_tasks)], "only the cancelled shard runs again"
    assert victim.split("_")[0] in arrays
