"""analysis.seeds: the crossed tasks × seeds bootstrap against a direct loop, scipy's bootstrap, and a lucky run."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import bootstrap, wilcoxon

from analysis.seeds import resample_means, seed_bootstrap


def test_vectorised_resampling_equals_a_direct_loop():
    rng = np.random.default_rng(1)
    ref, cand = rng.uniform(size=(5, 3)), rng.uniform(size=(5, 2))
    boot = resample_means(ref, cand, resamples=50, seed=7)
    draw = np.random.default_rng(7)
    t = draw.integers(0, 5, size=(50, 5))
    s_ref, s_cand = draw.integers(0, 3, size=(50, 3)), draw.integers(0, 2, size=(50, 2))
    for b in range(50):
        expected = np.mean([cand[i, s_cand[b]].mean() - ref[i, s_ref[b]].mean() for i in t[b]])
        assert boot[b] == pytest.approx(expected, abs=1e-12)


def test_one_seed_reduces_to_the_task_bootstrap_of_scipy():
    rng = np.random.default_rng(2)
    d = rng.normal(0.02, 0.03, size=12)
    ref = rng.uniform(0.3, 0.7, size=(12, 1))
    ours = seed_bootstrap(ref, ref + d[:, None], resamples=20000)
    direct = bootstrap((d,), np.mean, confidence_level=0.95, n_resamples=20000, method="percentile",
                       rng=np.random.default_rng(0)).confidence_interval
    se = np.std(d, ddof=1) / np.sqrt(len(d))
    assert ours.mean_diff == pytest.approx(d.mean())
    # two Monte-Carlo estimates of the same percentiles: they agree to a small fraction of the standard error
    assert ours.ci_low == pytest.approx(direct.low, abs=0.1 * se)
    assert ours.ci_high == pytest.approx(direct.high, abs=0.1 * se)


def test_null_p_values_are_roughly_uniform():
    rng = np.random.default_rng(3)
    p = []
    for _ in range(200):
        shared = rng.uniform(0.3, 0.7, size=(10, 1))
        ref = shared + rng.normal(0, 0.01, size=(10, 3)) + rng.normal(0, 0.01, size=(1, 3))
        cand = shared + rng.normal(0, 0.01, size=(10, 3)) + rng.normal(0, 0.01, size=(1, 3))
        p.append(seed_bootstrap(ref, cand, resamples=2000).p)
    p = np.array(p)
    # a 10-task, 3-seed bootstrap is approximate, but it must be neither wildly liberal nor stuck at 1
    assert 0.0 <= np.mean(p < 0.05) <= 0.15 and 0.3 < np.median(p) < 0.7


def test_a_lucky_training_run_is_significant_for_the_seed_averaged_test_only():
    """Candidate = reference except one seed that scored 0.03 higher on every task (one lucky run).

    The paper's test sees 10 positive task differences (p = 2/2^10); across seeds the effect is one run in three,
    so the crossed bootstrap must not call it significant."""
    rng = np.random.default_rng(4)
    base = rng.uniform(0.3, 0.7, size=(10, 1))
    noise = lambda: rng.normal(0, 0.002, size=(10, 3))   # noqa: E731
    seed_shift = np.array([[0.03, 0.0, 0.0]])
    ref, cand = base + noise(), base + noise() + seed_shift
    paper = wilcoxon(np.round(cand.mean(axis=1) - ref.mean(axis=1), 4))
    assert paper.pvalue < 0.01
    lucky = seed_bootstrap(ref, cand)
    assert lucky.p > 0.05 and lucky.ci_low < 0 < lucky.ci_high
    # the same 0.01 mean effect in every run is consistent and stays significant
    steady = seed_bootstrap(ref, base + noise() + 0.01)
    assert steady.p < 0.01 and steady.ci_low > 0


def test_one_sided_and_bad_input():
    rng = np.random.default_rng(5)
    ref = rng.uniform(size=(8, 1)) + rng.normal(0, 0.005, size=(8, 3))
    better = ref + 0.05 + rng.normal(0, 0.005, size=(8, 3))
    assert seed_bootstrap(ref, better, "greater").p < 0.01 and seed_bootstrap(ref, better, "less").p > 0.9
    assert seed_bootstrap(ref, ref).p == 1.0
    with pytest.raises(ValueError, match="NaN"):
        seed_bootstrap(ref, np.full((8, 3), np.nan))
    with pytest.raises(ValueError, match="same tasks"):
        seed_bootstrap(ref, ref[:4])


def test_analysis_reports_both_tests_for_a_lucky_run(tmp_path):
    from analysis import analyze
    from tests.fixtures.analysis_sweep import write_cell

    rng = np.random.default_rng(6)
    tasks = [f"STS{i}" for i in range(10)]
    base = {t: float(rng.uniform(0.3, 0.7)) for t in tasks}
    for pooling, lucky in (("eos_last", 0.0), ("mean", 0.03)):
        for seed in (0, 1, 2):
            shift = lucky if seed == 0 else 0.0
            write_cell(tmp_path, "tiny", pooling, "causal", seed,
                       {t: ("STS", round(base[t] + shift + rng.normal(0, 0.002), 4)) for t in tasks})
    result = analyze(tmp_path, plots=False, family="vs_baseline")
    (row,) = result.stats.to_dict("records")
    assert row["family"] == "primary" and row["p"] < 0.01 and row["reject_holm"]      # the paper's test: yes
    assert row["p_seed"] > 0.05 and not row["reject_seed_holm"]                       # across runs: no
    assert row["seed_ci_low"] < 0 < row["seed_ci_high"]
    assert "| STS | eos_last/causal (#1) | mean/causal |" in result.report


def test_seed_matrix_fills_a_task_a_seed_lacks_with_that_task_mean():
    import pandas as pd

    from analysis.compare import seed_matrix, seed_tables

    per_seed = pd.DataFrame({"design": ["d"] * 5, "seed": [0, 1, 2, 0, 2], "task": ["A", "A", "A", "B", "B"],
                             "score": [0.1, 0.2, 0.3, 0.5, 0.7]})
    matrix = seed_matrix(seed_tables(per_seed), "d", ["B", "A"])
    np.testing.assert_allclose(matrix, [[0.5, 0.6, 0.7], [0.1, 0.2, 0.3]])
    assert seed_matrix(seed_tables(per_seed), "other", ["A"]).shape == (1, 0)
