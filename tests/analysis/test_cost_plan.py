"""Cost plan: priced from finished cells' cost records (or their timings), the estimate beside the actual in the
report, and a real tiny grid priced and run (how close the estimate comes: benchmarks/cost_plan.py, a timing is
never asserted in a test)."""
from __future__ import annotations

import json
import time

import pytest

from analysis import analyze
from analysis.__main__ import main
from analysis.cost_plan import ESTIMATE_FILE, cost_plan, load_records
from analysis.designs import Design
from tests.fixtures.analysis_sweep import write_cell
from tests.helpers import TINY, launch

SCORES = {f"STS{i}": ("STS", 0.5 + i / 100) for i in range(6)}


def _cost(train_s: float, eval_s: float) -> dict:
    phases = {"build": (1.0, 0.001), "train": (train_s, train_s / 3600), "save": (0.5, 0.0001),
              "evaluate": (eval_s, eval_s / 3600)}
    return {"phases": {k: {"wall_s": w, "device_hours": h, "tokens": 0, "mfu": None} for k, (w, h) in phases.items()},
            "total": {"wall_s": sum(w for w, _ in phases.values()), "device_hours": sum(h for _, h in phases.values())},
            "device": {"name": "cpu"}}


def priced_cell(sweep, pooling, seed, record: dict, train=None):
    cell = write_cell(sweep, "tiny", pooling, "causal", seed, SCORES,
                      extra_config={"train": train or {"max_steps": 3}, "eval": {"name": "offline_small"}})
    path = cell / "cell.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **record}))
    return cell


def test_cost_records_are_preferred_and_timings_are_the_fallback(tmp_path):
    priced_cell(tmp_path, "mean", 0, {"cost": _cost(100, 20)})
    priced_cell(tmp_path, "mean", 1, {"cost": _cost(120, 40)})
    priced_cell(tmp_path, "eos_last", 0, {"timings": {"build_and_train_s": 50.0, "eval_s": 10.0}, "seconds": 70.0})
    priced_cell(tmp_path, "cls", 0, {"cost": _cost(1000, 1)}, train={"max_steps": 999})   # another recipe
    records = load_records([tmp_path])
    assert sorted(r.basis for r in records) == ["cost record", "cost record", "cost record", "timings"]
    plan = cost_plan(records, [Design("tiny", "mean", "causal"), Design("tiny", "eos_last", "causal"),
                               Design("tiny", "last_token", "causal")], seeds=2)
    assert any("2 recipes" in n or "recipes" in n for n in plan.notes)
    mean, eos, other = plan.designs
    assert mean.phases["train"][0] == pytest.approx(110) and mean.wall_s == pytest.approx(111.5 + 30)
    assert "this design" in mean.basis and "2 cost record" in mean.basis
    assert eos.phases == {"build+train+save": (50.0, 50 / 3600), "evaluate": (10.0, 10 / 3600)}
    assert eos.wall_s == 60.0 and "timings" in eos.basis
    assert plan.setup_s == 10.0      # 70 s recorded, 60 s in phases: the process's imports, paid once
    assert "other designs" in other.basis            # no cell of its own design: the model and recipe's mean
    assert other.wall_s == pytest.approx((121.5 + 161.5 + 60) / 3)
    assert plan.cells == 6
    cells = 2 * (mean.wall_s + eos.wall_s + other.wall_s)
    assert plan.wall_s == pytest.approx(10 + cells)
    plan.parallel = 3                                # a process per cell: set-up in each
    assert plan.wall_s == pytest.approx((cells + 6 * 10) / 3)


def test_report_puts_estimate_and_actual_side_by_side(tmp_path, capsys):
    pilot, sweep = tmp_path / "pilot", tmp_path / "sweep"
    for seed in (0, 1):
        priced_cell(pilot, "mean", seed, {"cost": _cost(100, 20)})
    assert main(["plan", "--no-power", "--grid", "pooling=mean,eos_last", "attention=causal", "--seeds", "1",
                 "--cost-from", str(pilot), "--out", str(sweep)]) == 0
    printed = capsys.readouterr().out
    assert "2 cell(s) (2 design(s) × 1 seed(s))" in printed and "0:04:03" in printed     # 2 × 121.5 s
    estimate = json.loads((sweep / ESTIMATE_FILE).read_text())
    assert estimate["phases"]["train"]["wall_s"] == pytest.approx(200)
    priced_cell(sweep, "mean", 0, {"cost": _cost(300, 20)})
    priced_cell(sweep, "eos_last", 0, {"cost": _cost(100, 20)})
    report = analyze(sweep, plots=False, family="vs_baseline", baseline=("mean", "causal")).report
    section = report.split("## Cost: estimate and actual")[1]
    assert "| train | 0:03:20 | 0:06:40 | 2.00 |" in section
    assert "2 cell(s) estimated, 2 finished cell(s)" in section
    # without an estimate file there is no such section
    (sweep / ESTIMATE_FILE).unlink()
    assert "Cost: estimate" not in analyze(sweep, plots=False, family="vs_baseline", baseline=("mean", "causal")).report


def test_the_launch_start_up_is_measured_on_the_pilot(tmp_path):
    cells = [priced_cell(tmp_path, "mean", seed, {"cost": _cost(100, 20), "seconds": 121.5}) for seed in (0, 1)]
    (tmp_path / "summary.json").write_text(json.dumps({
        "launched_at": 1000.0, "finished_at": 1000.0 + 2 * 121.5 + 30,
        "cells": [{"cell_dir": str(c), "status": "done"} for c in cells]}))
    from analysis.cost_plan import launch_overheads

    assert launch_overheads([tmp_path]) == [pytest.approx(30.0)]
    plan = cost_plan(load_records([tmp_path]), [Design("tiny", "mean", "causal")], seeds=3,
                     overheads=launch_overheads([tmp_path]))
    assert plan.launch_s == pytest.approx(30) and plan.wall_s == pytest.approx(30 + 3 * 121.5)
    assert not plan.notes
    # a relaunch that skipped every cell measures the start-up alone
    (tmp_path / "summary.json").write_text(json.dumps({
        "launched_at": 5.0, "finished_at": 25.0, "cells": [{"cell_dir": str(c), "status": "skipped"} for c in cells]}))
    assert launch_overheads([tmp_path]) == [pytest.approx(20.0)]


def test_no_records_is_said_not_guessed(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["plan", "--no-power", "--grid", "pooling=mean", "--cost-from", str(tmp_path / "empty")]) == 2
    assert "no finished cell with a cost record or timings" in capsys.readouterr().err


@pytest.mark.slow
def test_cost_plan_of_a_tiny_grid_is_priced_then_compared_with_its_run(tmp_path, launch_env, capsys):
    """Price two cells from a one-cell pilot of the same recipe, run them, compare with the measured wall time."""
    pilot, sweep = tmp_path / "pilot", tmp_path / "grid"
    launch(["-m", *TINY, "pooling=mean", "seed=0", "analyze=false", f"hydra.sweep.dir={pilot}"], launch_env)
    assert main(["plan", "--no-power", "--grid", "pooling=mean", "attention=causal", "--seeds", "2",
                 "--cost-from", str(pilot), "--out", str(sweep)]) == 0
    estimate = json.loads((sweep / ESTIMATE_FILE).read_text())["wall_s"]
    started = time.perf_counter()
    launch(["-m", *TINY, "pooling=mean", "seed=1,2", "analyze=false", f"hydra.sweep.dir={sweep}"], launch_env)
    actual = time.perf_counter() - started
    error = estimate / actual - 1
    cells = json.loads((sweep / ESTIMATE_FILE).read_text())
    with capsys.disabled():
        print(f"\ncost plan of a 2-cell tiny grid: estimated {estimate:.1f} s (of which start-up "
              f"{cells['launch_s']:.1f} s), actual {actual:.1f} s from launch to exit, error {error:+.0%}")
    assert estimate > cells["launch_s"] > 0 and actual > 0
    report = analyze(sweep, plots=False, family="vs_baseline", baseline=("mean", "causal")).report
    assert "## Cost: estimate and actual" in report
