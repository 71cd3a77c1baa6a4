"""eval.shards with Hydra's in-process launcher (the shards run in turn), the shard job itself, and the sweeper's
handling of shard jobs that fail or die (a fake launcher)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hydra.core.utils import JobReturn, JobStatus

from tests.helpers import launch
from tests.helpers.grid import GRID, cell_records

TASKS = ["LeeDocumentSTS", "WordSim353STS", "FoodSearchReranking"]
ARGS = [*GRID, f"eval.tasks=[{','.join(TASKS)}]", "analyze=false"]


def _scores(sweep: Path) -> dict[str, float]:
    (path,) = sweep.glob("*/scores.json")
    return {task: entry["main_score"] for task, entry in json.loads(path.read_text()).items()}


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    import os

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    root = tmp_path_factory.mktemp("shards")
    launch(["-m", *ARGS, f"hydra.sweep.dir={root / 'plain'}"], env)
    proc = launch(["-m", *ARGS, "eval.shards=2", f"hydra.sweep.dir={root / 'sharded'}"], env)
    return root, env, proc


@pytest.mark.slow
def test_in_process_shards_give_the_unsharded_scores_and_a_relaunch_scores_only_what_is_missing(sweeps):
    root, env, proc = sweeps
    assert "evaluation: 2 shard jobs" in proc.stdout and "1 done, 0 skipped" in proc.stdout
    (record,) = cell_records(root / "sharded").values()
    assert record["status"] == "done" and record["eval_shards"]["shards"] == [["LeeDocumentSTS"],
                                                                            ["WordSim353STS", "FoodSearchReranking"]]
    assert set(record["cost"]["phases"]) == {"build", "train", "save", "evaluate"}
    plain = _scores(root / "plain")
    assert _scores(root / "sharded") == pytest.approx(plain, abs=1e-6)

    # one task's score lost (its mteb result too): the relaunch trains nothing and scores that task alone
    cell = next((root / "sharded").glob("tiny-*"))
    scores = json.loads((cell / "scores.json").read_text())
    del scores["WordSim353STS"]
    (cell / "scores.json").write_text(json.dumps(scores))
    for result in cell.glob("mteb/**/WordSim353STS.json"):
        result.unlink()
    again = launch(["-m", *ARGS, "eval.shards=2", f"hydra.sweep.dir={root / 'sharded'}"], env)
    assert "evaluation: 1 shard jobs" in again.stdout and "1 done, 0 skipped" in again.stdout
    assert re.findall(r"eval_shard=\[([^\]]*)\]", again.stdout) == ["'WordSim353STS'"]
    assert "training on" not in again.stdout
    assert _scores(root / "sharded") == pytest.approx(plain, abs=1e-6)


@pytest.mark.slow
def test_a_failing_shard_leaves_the_cell_failed_naming_its_tasks_and_its_rerun_completes_it(sweeps, compose,
                                                                                             monkeypatch):
    import embedgrid.evaluate.run as run
    from embedgrid.errors import ShardFailed
    from embedgrid.grid.shard import run_shard

    root, _, _ = sweeps
    cell = next((root / "sharded").glob("tiny-*"))
    before = _scores(root / "sharded")
    cfg = compose([*ARGS, "eval.shards=2"])
    record = json.loads((cell / "cell.json").read_text())
    assert record["cell"] == cell.name, "the composed config is the cell's"
    scores = json.loads((cell / "scores.json").read_text())
    del scores["FoodSearchReranking"]
    (cell / "scores.json").write_text(json.dumps(scores))
    (cell / "cell.json").write_text(json.dumps({**record, "status": "eval_pending"}))

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    with monkeypatch.context() as patch:
        patch.setattr(run, "evaluate_encoder", boom)
        with pytest.raises(ShardFailed, match="FoodSearchReranking: RuntimeError: boom"):
            run_shard(cfg, cell, ["FoodSearchReranking"])
    record = json.loads((cell / "cell.json").read_text())
    assert record["status"] == "failed" and "FoodSearchReranking" in record["error"]

    outcome = run_shard(cfg, cell, ["FoodSearchReranking"])
    assert outcome.status == "done"
    record = json.loads((cell / "cell.json").read_text())
    assert record["status"] == "done" and record["error"] is None
    assert _scores(root / "sharded") == pytest.approx(before, abs=1e-6)


# ---- the sweeper's side, with a fake launcher -------------------------------------------------------------------
class Cell:
    def __init__(self, cell_dir: Path, shards):
        self.cell_dir, self.overrides, self.shards = str(cell_dir), ["model=tiny"], shards
        self.status, self.error = "eval_pending", None


def _cell(tmp_path: Path, name: str, shards) -> Cell:
    (tmp_path / name).mkdir()
    (tmp_path / name / "cell.json").write_text(json.dumps({"status": "eval_pending"}))
    return Cell(tmp_path / name, shards)


class FakeJob:
    def __init__(self, cell_dir: str, overrides: list[str], dies: bool, completes: bool = False):
        self.cell_dir, self.overrides, self.dies, self.job_id = cell_dir, overrides, dies, "7_0"
        self.completes = completes  # the last shard: it records the cell done

    def results(self):
        if self.dies:
            raise RuntimeError("Job 7_0 (task: 0) with path x has not produced any output (state: CANCELLED)")
        if self.completes:
            Path(self.cell_dir, "cell.json").write_text(json.dumps({"status": "done"}))
        result = JobReturn()
        result.status = JobStatus.COMPLETED
        result.return_value = {"status": "done" if self.completes else "eval_pending"}
        return [result]


class FakeSlurm:
    _EXECUTOR = "slurm"


def test_a_died_shard_is_submitted_again_alone(tmp_path, monkeypatch):
    import embedgrid.grid.shardjobs as shardjobs

    cell = _cell(tmp_path, "c", [["A"], ["B", "C"]])
    submitted, deaths = [], {"'B','C'": 1}

    def submit(launcher, job_overrides, initial_job_idx):
        submitted.append([o[-2] for o in job_overrides])
        jobs = []
        for overrides in job_overrides:
            key = overrides[-2].split("=", 1)[1].strip("[]")
            jobs.append(FakeJob(cell.cell_dir, overrides, dies=deaths.get(key, 0) > 0, completes=key == "'B','C'"))
            deaths[key] = deaths.get(key, 0) - 1
        return jobs

    monkeypatch.setattr(shardjobs, "submit", submit)
    shardjobs.run_shards(FakeSlurm(), [cell], initial_job_idx=1)
    assert submitted == [["eval_shard=['A']", "eval_shard=['B','C']"], ["eval_shard=['B','C']"]]
    assert cell.status == "done" and cell.error is None


def test_a_shard_that_dies_twice_fails_its_cell_naming_the_tasks(tmp_path, monkeypatch):
    import embedgrid.grid.shardjobs as shardjobs

    cell = _cell(tmp_path, "c", [["A"], ["B"]])
    monkeypatch.setattr(shardjobs, "submit", lambda launcher, overrides, idx: [
        FakeJob(cell.cell_dir, o, dies=o[-2].endswith("['B']")) for o in overrides])
    shardjobs.run_shards(FakeSlurm(), [cell], initial_job_idx=1)
    assert cell.status == "failed" and "shard job for B died" in cell.error


def test_a_failed_shard_in_process_fails_its_cell_with_the_shards_error(tmp_path):
    from embedgrid.grid.shardjobs import run_shards

    cell = _cell(tmp_path, "c", [["A"], ["B"]])

    class Basic:
        def launch(self, job_overrides, initial_job_idx):
            results = []
            for overrides in job_overrides:
                result = JobReturn()
                failed = overrides[-2].endswith("['B']")
                result.status = JobStatus.COMPLETED
                result.return_value = {"status": "failed", "error": "ShardFailed: evaluation shard B: oops"} \
                    if failed else {"status": "eval_pending"}
                results.append(result)
            return results

    run_shards(Basic(), [cell], initial_job_idx=1)
    assert cell.status == "failed" and cell.error == "ShardFailed: evaluation shard B: oops"


def test_shard_overrides_quote_the_task_names():
    from embedgrid.grid.shardjobs import shard_overrides

    assert shard_overrides(["a=1"], ["STS17", "It's"]) == ["a=1", r"eval_shard=['STS17','It\'s']",
                                                         "hydra.output_subdir=null"]
