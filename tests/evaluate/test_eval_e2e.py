"""The offline suite through the real CLI on model=tiny: killed mid-suite, relaunched, it resumes at the next
unfinished task; the finished cell holds scores.json (tasks only) and category_scores.json."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, TINY


@pytest.mark.slow
def test_offline_suite_killed_mid_suite_resumes(tmp_path, launch_env, compose):
    cell = tmp_path / "cell"
    tiny = [o for o in TINY if not o.startswith("eval")]  # the whole small suite, not TINY's single task
    args = [sys.executable, str(ROOT / "launch.py"), *tiny, "train.max_steps=0", "eval=offline_small",
            f"hydra.run.dir={cell}"]
    tasks = list(compose(["eval=offline_small"]).eval.tasks)
    proc = subprocess.Popen(args, cwd=ROOT, env=launch_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            finished = [p for p in (cell / "mteb").rglob("*.json") if p.stem in tasks]
            if len(finished) >= 3:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the suite finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    before = {p.stem: p.stat().st_mtime_ns for p in (cell / "mteb").rglob("*.json") if p.stem in tasks}
    assert 3 <= len(before) < len(tasks)
    assert not (cell / "scores.json").exists()

    again = subprocess.run(args, cwd=ROOT, env=launch_env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    after = {p.stem: p.stat().st_mtime_ns for p in (cell / "mteb").rglob("*.json") if p.stem in tasks}
    assert set(after) == set(tasks)
    assert all(after[t] == before[t] for t in before), "a finished task was evaluated again"

    scores = json.loads((cell / "scores.json").read_text())
    assert list(scores) == tasks
    assert all({"category", "main_score"} <= set(s) for s in scores.values())
    categories = json.loads((cell / "category_scores.json").read_text())
    assert set(categories["means"]) == {"STS", "Classification", "Clustering", "Retrieval", "Reranking",
                                        "PairClassification"}
    assert "Summarization" in categories["not_evaluated"]
    record = json.loads((cell / "cell.json").read_text())
    assert record["status"] == "done" and record["category_scores"] == categories
