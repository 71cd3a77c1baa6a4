"""hydra/sweeper=promote: stage 1 on a cheap evaluation, the promoted designs on the full one with their trained
models reused, both stages reported with Kendall's τ; a relaunch skips everything. Plus the selection rules."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from analysis.promote import agreement, parse_keep, select
from hydra_plugins.embedgrid_sweeper import promote_sweeper
from hydra_plugins.embedgrid_sweeper.promote_sweeper import reuse_model
from tests.fixtures.analysis_sweep import write_cell
from tests.helpers import TINY, launch

TASKS = "eval.tasks=[LeeDocumentSTS,WordSim353STS]"


def stage(root, shifts: dict[str, float], seeds=(0, 1, 2), tasks=8, noise=0.002):
    import numpy as np

    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.7, tasks)
    for pooling, shift in shifts.items():
        for seed in seeds:
            write_cell(root, "tiny", pooling, "causal", seed,
                       {f"STS{i}": ("STS", float(base[i] + shift + rng.normal(0, noise))) for i in range(tasks)})


def test_not_worse_keeps_what_the_seed_aware_test_cannot_separate_from_the_best(tmp_path):
    stage(tmp_path, {"mean": 0.0, "eos_last": -0.0005, "cls": -0.05})
    decision = select(tmp_path, "not_worse")
    by = {r["pooling"]: r for r in decision["designs"]}
    best, twin = sorted(("mean", "eos_last"), key=lambda p: by[p]["rank"])      # equal but for noise
    assert by[best]["promoted"] and by[best]["why"] == "best mean" and by[best]["rank"] == 1
    assert by[twin]["promoted"] and by[twin]["test"] == "seed-aware" and by[twin]["p"] >= 0.05
    assert not by["cls"]["promoted"] and "significantly worse" in by["cls"]["why"] and by["cls"]["p"] < 0.05
    top = select(tmp_path, "top:1")
    assert [r["pooling"] for r in top["designs"] if r["promoted"]] == [best]
    with pytest.raises(ValueError, match="top:K"):
        parse_keep("top:0")


def test_kendall_tau_of_the_stages(tmp_path):
    stage(tmp_path / "a", {"mean": 0.03, "eos_last": 0.02, "cls": 0.0})
    stage(tmp_path / "b", {"mean": 0.0, "eos_last": 0.02, "cls": 0.03})    # order reversed
    same = agreement(tmp_path / "a", tmp_path / "a")
    assert same["tau"] == 1.0 and same["tau_ci"] == [1.0, 1.0]
    reversed_ = agreement(tmp_path / "a", tmp_path / "b")
    assert reversed_["tau"] == -1.0 and reversed_["tau_ci"][1] < 0
    assert reversed_["tasks"] == 8 and len(reversed_["designs"]) == 3


def test_reuse_only_a_finished_model(tmp_path):
    done = write_cell(tmp_path / "s1", "tiny", "mean", "causal", 0, {"STS0": ("STS", 0.5)})
    (done / "model").mkdir()
    (done / "model" / "encoder.json").write_text("{}")
    target = tmp_path / "s2" / done.name
    assert reuse_model(done, target) == 1
    assert (target / "model" / "encoder.json").stat().st_ino == (done / "model" / "encoder.json").stat().st_ino
    assert not (target / "scores.json").exists()                          # scores are the stage's own
    assert reuse_model(done, target) == 0                                 # never over an existing cell
    failed = write_cell(tmp_path / "s1", "tiny", "eos_last", "causal", 0, None, status="failed")
    (failed / "model").mkdir()
    assert reuse_model(failed, tmp_path / "s2" / failed.name) == 0
    assert not list((tmp_path / "s2").glob(".*reuse*"))


def test_a_failure_mid_copy_leaves_no_partial_cell(tmp_path, monkeypatch):
    done = write_cell(tmp_path / "s1", "tiny", "mean", "causal", 0, {"STS0": ("STS", 0.5)})
    (done / "model").mkdir()
    for name in ("a.json", "b.json"):
        (done / "model" / name).write_text("{}")
    copied = []

    def copy_then_fail(src, dst):
        if copied:
            raise OSError(28, "No space left on device")
        copied.append(dst)
        os.link(src, dst)

    monkeypatch.setattr(promote_sweeper, "_link_or_copy", copy_then_fail)
    target = tmp_path / "s2" / done.name
    with pytest.raises(OSError, match="No space left"):
        reuse_model(done, target)
    assert copied and Path(copied[0]).parent.name == "model"           # it failed after one file was in place
    assert not target.exists() and not list(target.parent.iterdir())  # no half cell, no temporary directory
    monkeypatch.undo()
    assert reuse_model(done, target) == 1                              # the next launch reuses it whole
    assert sorted(p.name for p in (target / "model").iterdir()) == ["a.json", "b.json"]


@pytest.mark.slow
def test_tiny_promotion_sweep_runs_end_to_end_and_skips_on_relaunch(tmp_path, launch_env):
    root = tmp_path / "promo"
    tiny = [o for o in TINY if not o.startswith(("eval=", "eval."))]
    args = ["-m", "hydra/sweeper=promote", *tiny, "pooling=mean,eos_last", "analyze=false",
            f'hydra.sweeper.stage1=["eval=offline_small","{TASKS}"]', f'hydra.sweeper.stage2=["eval=offline","{TASKS}"]',
            f"hydra.sweep.dir={root}"]
    first = launch(args, launch_env).stdout
    decision = json.loads((root / "promotion.json").read_text())
    promoted = {r["pooling"] for r in decision["designs"] if r["promoted"]}
    assert promoted == {"mean", "eos_last"}     # one seed, two tasks: nothing can be significantly worse
    assert "2 trained model(s) reused" in first
    for cell in (root / "stage2").glob("tiny-*"):
        record = json.loads((cell / "cell.json").read_text())
        assert record["status"] == "done" and record["config"]["eval"]["name"] == "offline"
        twin = root / "stage1" / cell.name
        assert (cell / "model" / "encoder.json").stat().st_ino == (twin / "model" / "encoder.json").stat().st_ino
        assert json.loads((twin / "cell.json").read_text())["config"]["eval"]["name"] == "offline_small"
    report = (root / "promotion.md").read_text()
    assert "| tiny/mean/causal |" in report and "Kendall τ between the stages" in report
    second = launch(args, launch_env).stdout
    assert "0 done, 2 skipped" in second and second.count("2 skipped") == 2       # both stages skip
    assert "0 trained model(s) reused" in second
