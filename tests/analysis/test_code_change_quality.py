"""benchmarks/code_change_quality.py: two sweeps of the same cells, the score shift per category and its test."""
from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from tests.helpers import TINY

TASKS = {f"Sts{i}": "STS" for i in range(7)} | {f"Cls{i}": "Classification" for i in range(6)}


def fake_sweep(root, compose, shift: dict[str, float], steps: int = 8):
    """Three finished seeds of one tiny design, with made-up scores (seed noise ±0.01) moved by ``shift``."""
    from embedgrid.grid.cellid import cell_name

    for seed in range(3):
        cfg = compose([*TINY, f"seed={seed}", f"train.max_steps={steps}"])
        cell = root / cell_name(cfg)
        cell.mkdir(parents=True)
        (cell / "cell.json").write_text(json.dumps({
            "status": "done", "config": OmegaConf.to_container(cfg, resolve=True),
            "train": {"final_loss": 1.0 + seed / 10}}))
        scores = {task: {"category": category, "in_domain": False,
                         "main_score": 0.5 + 0.02 * k + 0.01 * (seed - 1) + shift.get(category, 0.0)}
                  for k, (task, category) in enumerate(TASKS.items())}
        scores["InDomain"] = {"category": "STS", "in_domain": True, "main_score": 0.9 + shift.get("STS", 0.0)}
        (cell / "scores.json").write_text(json.dumps(scores))


def test_a_shift_in_one_category_is_measured_there_and_only_there(tmp_path, compose):
    import benchmarks.code_change_quality as ccq

    fake_sweep(tmp_path / "before", compose, {})
    fake_sweep(tmp_path / "after", compose, {"STS": 0.05})
    result = ccq.compare(tmp_path / "before", tmp_path / "after", resamples=2000)
    sts, cls = result["categories"]["STS"], result["categories"]["Classification"]
    assert sts["tasks"] == 7 and cls["tasks"] == 6  # the in-domain task is left out
    assert sts["mean_diff"] == pytest.approx(0.05, abs=1e-9) and sts["wilcoxon_p"] < 0.05
    assert cls["mean_diff"] == pytest.approx(0.0, abs=1e-9) and cls["seed_aware_p"] > 0.5
    pooled = result["categories"]["all out-of-domain tasks (pooled)"]
    assert pooled["tasks"] == 13 and pooled["mean_diff"] == pytest.approx(0.05 * 7 / 13, abs=1e-9)
    assert result["final_loss"]["before"] == [1.0, 1.1, 1.2]


def test_cells_of_two_designs_are_refused(tmp_path, compose):
    import benchmarks.code_change_quality as ccq

    fake_sweep(tmp_path / "before", compose, {})
    fake_sweep(tmp_path / "before", compose, {}, steps=9)
    with pytest.raises(SystemExit, match="2 designs"):
        ccq.compare(tmp_path / "before", tmp_path / "before")
