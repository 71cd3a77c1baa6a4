"""--twin KEY=VALUE: each design against the same design at another setting (trained vs zero-shot, a correction)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wilcoxon

from analysis import analyze
from analysis.errors import OptionError
from tests.fixtures.analysis_sweep import write_cell

TASKS = [f"STS{i}" for i in range(8)]


def twin_sweep(sweep, gain: float):
    """mean/causal trained (64 steps, 3 seeds, +gain with seed noise) and its zero-shot twin (0 steps, 3 seeds,
    identical scores: nothing depends on the seed without training)."""
    rng = np.random.default_rng(3)
    base = {t: round(float(rng.uniform(0.3, 0.7)), 4) for t in TASKS}
    written = {}
    for steps in (0, 64):
        for seed in (0, 1, 2):
            scores = {t: round(base[t] + (gain + float(rng.normal(0, 0.004)) if steps else 0.0), 4) for t in TASKS}
            written[(steps, seed)] = scores
            write_cell(sweep, "tiny", "mean", "causal", seed, {t: ("STS", s) for t, s in scores.items()},
                       extra_config={"train": {"max_steps": steps}})
    return written


def test_each_design_is_tested_against_its_twin_with_scipy_p(tmp_path):
    written = twin_sweep(tmp_path, gain=0.03)
    result = analyze(tmp_path, plots=False, twin="train.max_steps=0", presets=["twins"], family="twins",
                     baseline=("mean", "causal"))
    (row,) = result.stats.to_dict("records")
    assert row["reference"].endswith("train.max_steps=0") and row["candidate"].endswith("train.max_steps=64")
    trained = np.mean([[written[(64, s)][t] for s in range(3)] for t in TASKS], axis=1)
    zero = np.array([written[(0, 0)][t] for t in TASKS])
    expected = wilcoxon(np.round(trained - zero, 4), zero_method="wilcox", correction=False, method="auto")
    assert row["p"] == pytest.approx(expected.pvalue, rel=1e-12)
    assert row["mean_diff"] == pytest.approx(float(np.mean(np.round(trained - zero, 4))), abs=1e-12)
    # three seeds per side: the seed-aware test runs, and a +0.03 gain against 0.004 seed noise is beyond it
    assert (row["seeds_reference"], row["seeds_candidate"]) == (3, 3)
    assert row["p_seed"] < 0.01 and row["seed_ci_low"] > 0
    assert "`twins` (every design vs its twin at `train.max_steps=0`" in result.report


def test_no_gain_is_not_significant(tmp_path):
    twin_sweep(tmp_path, gain=0.0)
    result = analyze(tmp_path, plots=False, twin="train.max_steps=0", presets=["twins"], family="twins",
                     baseline=("mean", "causal"))
    (row,) = result.stats.to_dict("records")
    assert row["seed_ci_low"] < 0 < row["seed_ci_high"]


def test_bad_twin_settings_are_refused_by_name(tmp_path):
    twin_sweep(tmp_path, gain=0.0)
    with pytest.raises(OptionError, match="KEY=VALUE"):
        analyze(tmp_path, plots=False, twin="train.max_steps")
    with pytest.raises(OptionError, match="needs the twin setting"):
        analyze(tmp_path, plots=False, presets=["twins"])
    # a twin value no cell has: the pair is reported as skipped, not silently dropped
    result = analyze(tmp_path, plots=False, twin="train.max_steps=5", presets=["twins"], family="twins")
    assert any(p.kind == "comparison skipped" and "train.max_steps=5" in p.detail for p in result.problems)


def test_cli_twin_flag(tmp_path, capsys):
    from analysis.__main__ import main

    twin_sweep(tmp_path, gain=0.03)
    assert main([str(tmp_path), "--twin", "train.max_steps=0", "--compare", "twins", "--family", "twins",
                 "--baseline", "mean,causal", "--no-plots"]) == 0
    assert "report:" in capsys.readouterr().out
