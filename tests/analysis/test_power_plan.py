"""Power plan: variance components, the simulated Holm power of the seed-aware test against the real test on data
with known effects, the closed forms, and the committed paper-grid report's verdict reproduced from its long table."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.__main__ import main
from analysis.long_scores import LONG_FILE, designs_of, read_long
from analysis.plan import (PRIOR_SD_INTERACTION, PRIOR_SD_NOISE, PRIOR_SD_RUN, load_pilot, pilot_tests,
                           power_plan)
from analysis.power_plan import (Components, _holm_reject, estimate, family_power, normal_power, normal_seeds,
                                 normal_tasks, wilcoxon_floor_tasks)
from analysis.seeds import seed_bootstrap
from analysis.stats import holm, holm_bounds

PAPER_REPORT = Path(__file__).resolve().parents[2] / "docs" / "reports" / "paper_grid_smollm2"


def study(rng, c: Components, tasks: int, seeds: int):
    """One synthetic pilot of a pair under the plan's model: (reference, candidate) tasks × seeds matrices."""
    base = rng.uniform(0.3, 0.7, tasks)[:, None]
    ref = base + rng.normal(0, math.sqrt(c.run_ref), (1, seeds)) + rng.normal(0, math.sqrt(c.noise_ref),
                                                                               (tasks, seeds))
    cand = (base + c.effect + rng.normal(0, math.sqrt(c.interaction), (tasks, 1))
            + rng.normal(0, math.sqrt(c.run_cand), (1, seeds)) + rng.normal(0, math.sqrt(c.noise_cand),
                                                                             (tasks, seeds)))
    return ref, cand


def test_components_are_recovered_from_a_large_pilot():
    truth = Components(0.02, 0.03 ** 2, 0.01 ** 2, 0.005 ** 2, 0.02 ** 2, 0.015 ** 2)
    ref, cand = study(np.random.default_rng(0), truth, tasks=400, seeds=40)
    got = estimate(ref, cand)
    assert got.effect == pytest.approx(truth.effect, abs=4 * truth.se(40, 400))
    for name in ("interaction", "run_ref", "run_cand", "noise_ref", "noise_cand"):
        # variance estimates: relative SE ≈ sqrt(2 / df); df ≥ 39 here, 4 SE ≈ 0.9 of the value at worst
        assert getattr(got, name) == pytest.approx(getattr(truth, name), rel=0.9), name
    assert got.noise_ref == pytest.approx(truth.noise_ref, rel=0.05)          # (T−1)(S−1) ≈ 15,600 df


def test_vectorised_holm_equals_statsmodels():
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 0.05, size=(50, 7)) ** rng.uniform(0.5, 2, size=(50, 7))
    ours = _holm_reject(p, 0.05)
    assert ours.any() and not ours.all()
    for row, reject in zip(p, ours):
        assert ((holm_bounds(row) <= 0.05) == reject).all()
    for row, reject in list(zip(p, ours))[:3]:       # statsmodels itself (slow: a garbage collection per call)
        assert (holm(row, 0.05)[0] == reject).all()


def test_planned_power_matches_the_real_seed_aware_test():
    """Three independent tests with known effects (one null), 10 tasks × 4 seeds: the plan's simulated Holm power
    against the rejection rate of the real crossed bootstrap (analysis.seeds) + Holm on synthetic studies. The
    tolerance is 3.5 Monte-Carlo standard errors of the difference of two binomial rates."""
    tests = [Components(e, 0.02 ** 2, 0.006 ** 2, 0.006 ** 2, 0.015 ** 2, 0.015 ** 2) for e in (0.03, 0.02, 0.0)]
    tasks, seeds, sims, studies = 10, 4, 20000, 300
    planned = family_power(tests, seeds, tasks, alpha=0.05, sims=sims, seed=1)
    rng = np.random.default_rng(5)
    p = np.array([[seed_bootstrap(*study(rng, c, tasks, seeds), resamples=2000, seed=int(rng.integers(2 ** 31))).p
                   for c in tests] for _ in range(studies)])
    empirical = _holm_reject(p, 0.05).mean(axis=0)
    tolerance = 3.5 * np.sqrt(planned * (1 - planned) * (1 / studies + 1 / sims)) + 1e-9
    assert (np.abs(planned - empirical) <= np.maximum(tolerance, 3.5 * np.sqrt(0.05 * 0.95 / studies))).all(), (
        planned, empirical, tolerance)
    assert planned[0] > 0.6 and 0.3 < planned[1] < 0.8 and planned[2] < 0.1     # a test that can fail both ways


def test_closed_forms_agree_with_the_simulation_where_degrees_of_freedom_are_many():
    """m = 1 (Holm = Bonferroni), 60 tasks × 30 seeds: the bootstrap's variance estimate is nearly exact, so the
    simulated power is the normal approximation's, and the closed-form sample sizes sit on the power curve."""
    c = Components(0.012, 0.02 ** 2, 0.005 ** 2, 0.005 ** 2, 0.02 ** 2, 0.02 ** 2)
    sim = family_power([c], 30, 60, alpha=0.01, sims=20000)[0]
    assert sim == pytest.approx(normal_power(c, 1, 30, 60, alpha=0.01), abs=0.03)
    tasks = normal_tasks(c, 1, 30, alpha=0.01, power=0.8)
    assert normal_power(c, 1, 30, tasks, 0.01) >= 0.8 > normal_power(c, 1, 30, tasks - 1, 0.01)
    seeds = normal_seeds(c, 1, 60, alpha=0.01, power=0.8)
    assert normal_power(c, 1, seeds, 60, 0.01) >= 0.8 > normal_power(c, 1, seeds - 1, 60, 0.01)
    # the task × design interaction does not shrink with seeds: with 6 tasks no number of seeds is enough
    assert normal_seeds(c, 1, 6, alpha=0.01, power=0.8) == math.inf


def test_wilcoxon_floor_closed_form():
    # m tests of n tasks: Holm's first step needs m · 2/2^n < alpha
    assert wilcoxon_floor_tasks(1, 0.05) == 6                  # 2/2^6 = 0.031
    assert wilcoxon_floor_tasks(36, 0.05) == 11                # 36 · 2/2^11 = 0.035; 36 · 2/2^10 = 0.070
    for m in (2, 5, 36, 100):
        n = wilcoxon_floor_tasks(m, 0.05)
        assert m * 2 / 2 ** n < 0.05 <= m * 2 / 2 ** (n - 1)


def test_paper_grid_report_verdict_is_reproduced_from_its_long_scores(tmp_path, capsys):
    """The committed 3-seed paper-grid report: no family test could reach Holm p < 0.05 (Wilcoxon floors) and no
    seed-aware test was significant; the plan says so from scores_long.csv alone and says what would have."""
    out = tmp_path / "plan"
    assert main(["plan", str(PAPER_REPORT), "--out", str(out), "--sims", "1000"]) == 0
    printed = capsys.readouterr().out
    assert "0 of 36 Wilcoxon tests can reach Holm p < 0.05" in printed
    assert "The Wilcoxon family can reach α only with ≥ 11 tasks in every category." in printed
    plan = json.loads((out / "power_plan.json").read_text())
    tests = pd.DataFrame(plan["tests"])
    assert plan["m"] == 36 and plan["pilot_seeds"] == 3 and plan["wilcoxon_min_tasks"] == 11
    stats = pd.read_csv(PAPER_REPORT / "stats.csv")
    members = stats[stats.family == "primary"]
    # the report's Holm floor of each member (no power screen) is the plan's, and all are ≥ alpha
    assert sorted(tests["wilcoxon_floor_at_pilot"].round(6)) == sorted(members["min_p_holm"].round(6))
    assert (tests["wilcoxon_floor_at_pilot"] >= 0.05).all()
    # the observed effects: the report's mean differences; the seed-aware tests underpowered, none significant
    # (the report's differences are rounded to 4 decimals before testing)
    np.testing.assert_allclose(sorted(tests["effect"]), sorted(members["mean_diff"]), atol=1e-4)
    assert (tests["power_at_pilot"] < 0.8).all() and not members["reject_seed_holm"].any()
    # what would have made each reachable: finite needs for the reachable ones, none beyond the limits
    reachable = tests[tests["reachable"]]
    assert 0 < len(reachable) < 36
    assert all(pd.isna(t) or t <= plan["max_tasks"] for t in tests["tasks_needed"])
    assert tests.loc[tests["tasks_needed"].notna(), "reachable"].all()
    # the smallest grid does power every reachable test (same simulation seed → the same draws)
    seeds, tasks = plan["smallest_grid"]["seeds"], plan["smallest_grid"]["tasks_per_category"]
    comps = [t.components for t in pilot_tests(load_pilot(PAPER_REPORT)[0], ("paper",))]
    pilot_tasks = tests["pilot_tasks"].to_numpy()
    at = family_power(comps, seeds, np.maximum(pilot_tasks, tasks), sims=1000)
    before = family_power(comps, seeds, np.maximum(pilot_tasks, tasks - 1), sims=1000)
    assert (at[tests["reachable"]] >= 0.8).all() and (before[tests["reachable"]] < 0.8).any()


def test_prior_is_the_paper_grid_median():
    """The documented prior (no pilot) is the median over the paper grid's 36 family tests."""
    scores, _ = load_pilot(PAPER_REPORT)
    tests = pilot_tests(scores, ("paper",))
    comps = [t.components for t in tests]
    assert PRIOR_SD_INTERACTION == pytest.approx(np.median([math.sqrt(c.interaction) for c in comps]), abs=5e-5)
    assert PRIOR_SD_RUN == pytest.approx(np.median([math.sqrt(v) for c in comps for v in (c.run_ref, c.run_cand)]),
                                         abs=5e-5)
    assert PRIOR_SD_NOISE == pytest.approx(
        np.median([math.sqrt(v) for c in comps for v in (c.noise_ref, c.noise_cand)]), abs=5e-5)


def test_prior_plan_and_bad_options(tmp_path, capsys):
    out = tmp_path / "prior"
    assert main(["plan", "--effect", "0.05", "--grid", "pooling=mean,eos_last", "attention=causal",
                 "--family", "vs_baseline", "--tasks", "8", "--categories", "2", "--sims", "500",
                 "--out", str(out)]) == 0
    plan = json.loads((out / "power_plan.json").read_text())
    assert plan["m"] == 2 and plan["effect"] == 0.05
    assert main(["plan"]) == 2 and "--effect is needed without a pilot" in capsys.readouterr().err
    assert main(["plan", str(PAPER_REPORT), "--effect", "big"]) == 2
    assert "--effect must be a number" in capsys.readouterr().err
    assert main(["plan", str(tmp_path / "nowhere"), "--effect", "0.01"]) == 2
    capsys.readouterr()
    from tests.fixtures.analysis_sweep import paper_sweep

    paper_sweep(tmp_path / "one_seed", seeds=(0,))
    assert main(["plan", str(tmp_path / "one_seed"), "--effect", "0.01"]) == 2
    assert "needs ≥ 2 seeds per design" in capsys.readouterr().err


def test_a_sweep_pilot_equals_its_report(tmp_path):
    """Planning from the sweep's cells or from the report's long table gives the same components."""
    from analysis import analyze
    from tests.fixtures.analysis_sweep import paper_sweep

    paper_sweep(tmp_path, seeds=(0, 1, 2), effects={("multi_layer_trainable", "causal"): {"STS": 0.01}})
    analyze(tmp_path, plots=False)
    from_sweep = pilot_tests(load_pilot(tmp_path)[0], ("paper",))
    from_report = pilot_tests(load_pilot(tmp_path / "analysis")[0], ("paper",))
    assert [t.name for t in from_sweep] == [t.name for t in from_report]
    for a, b in zip(from_sweep, from_report):
        for key in ("effect", "interaction", "run_ref", "run_cand", "noise_ref", "noise_cand"):
            assert getattr(a.components, key) == pytest.approx(getattr(b.components, key), abs=1e-12)
    assert set(designs_of(read_long(tmp_path / "analysis" / LONG_FILE))) == {t.reference for t in from_sweep} | {
        t.candidate for t in from_sweep}
    # PairClassification has 3 tasks: the seed-aware test does not run there, so it can never be powered
    plan = power_plan(from_sweep, 0.01, 0.05, 0.8, "two-sided", 4, 8, 300)
    pair = [t for t in plan.tests if t.name.endswith("PairClassification")]
    assert pair and all(t.power_at_pilot == 0 for t in pair)
