"""Comparisons that fit the grid: factors derived from the designs, simple and main effects, the automatic family,
the listing of tests that cannot reach alpha, and the factor-effects table."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from analysis import analyze
from analysis.__main__ import main
from analysis.designs import Design, PairContext
from analysis.factors import factor_pairs, factors, main_effects, simple_effects
from analysis.reach import tasks_needed
from tests.fixtures.analysis_sweep import PAPER, write_cell

STS = [f"STS{i}" for i in range(10)]
CLF = [f"Clf{i}" for i in range(10)]
GRID = [(p, a) for p in ("eos_last", "mean") for a in ("causal", "bidirectional")]


def grid_sweep(root, seeds=(0, 1, 2), tasks=(STS, CLF), effects=None, noise=0.01, extra=None):
    """2×2 pooling × attention; effects[(pooling, attention)][category] shifts every task of the category (noise
    wide enough that rounded differences rarely tie, so scipy's exact test runs rather than a permutation test)."""
    rng = np.random.default_rng(0)
    base = {t: float(rng.uniform(0.3, 0.8)) for group in tasks for t in group}
    for pooling, attention in GRID:
        for seed in seeds:
            scores = {}
            for category, group in zip(("STS", "Classification"), tasks):
                for task in group:
                    shift = (effects or {}).get((pooling, attention), {}).get(category, 0.0)
                    scores[task] = (category, round(base[task] + shift + rng.normal(0, noise), 4))
            write_cell(root, "tiny", pooling, attention, seed, scores, extra_config=extra)
    return root


def D(pooling, attention, extra=()):
    return Design("tiny", pooling, attention, tuple(extra))


def test_factors_simple_and_main_effects_of_a_2x2():
    designs = [D(p, a) for p, a in GRID]
    found = factors(designs, PairContext())
    assert [(f.name, f.levels) for f in found] == [("pooling", ("eos_last", "mean")),
                                                   ("attention", ("causal", "bidirectional"))]
    simple = simple_effects(designs, PairContext())
    assert sorted(simple) == sorted([(D("eos_last", "causal"), D("mean", "causal")),
                                     (D("eos_last", "bidirectional"), D("mean", "bidirectional")),
                                     (D("eos_last", "causal"), D("eos_last", "bidirectional")),
                                     (D("mean", "causal"), D("mean", "bidirectional"))])
    assert main_effects(designs, PairContext()) == [(D("eos_last", "*"), D("mean", "*")),
                                                    (D("*", "causal"), D("*", "bidirectional"))]


def test_paper_designs_are_not_a_full_factorial_and_their_factor_pairs_are_the_papers():
    designs = [D(p, a) for p, a in PAPER]
    context = PairContext()
    assert main_effects(designs, context) == []
    numbered = {frozenset((a.paper_number, b.paper_number)) for a, b in factor_pairs(designs, context)}
    # pooling under causal (1-2, 1-3, 2-3), under bidirectional (4-5), attention under trainable pooling (2-4, 3-5)
    assert numbered == {frozenset(p) for p in ((1, 2), (1, 3), (2, 3), (4, 5), (2, 4), (3, 5))}


def test_a_by_key_is_a_factor(tmp_path):
    for lr in (0.001, 0.01):
        grid_sweep(tmp_path / "s", seeds=(0, 1), extra={"train": {"lr": lr}})
    result = analyze(tmp_path / "s", out_dir=tmp_path / "out", plots=False, by=("train.lr",))
    assert {"pooling", "attention", "train.lr"} <= set(result.stats["factor"])
    main = result.stats[result.stats["effect"].str.startswith("main")]
    assert set(main["factor"]) == {"pooling", "attention", "train.lr"}
    assert "main (averaged over attention, train.lr)" in set(main["effect"])


@pytest.fixture(scope="module")
def two_by_two(tmp_path_factory):
    root = tmp_path_factory.mktemp("grid") / "sweep"
    effects = {("mean", "causal"): {"STS": 0.06}, ("mean", "bidirectional"): {"STS": 0.06, "Classification": -0.05},
               ("eos_last", "bidirectional"): {"Classification": -0.05}}
    grid_sweep(root, effects=effects)
    return root


def test_2x2_gets_pooling_only_and_attention_only_tests_in_the_derived_family(two_by_two, tmp_path, capsys):
    assert main([str(two_by_two), "--out", str(tmp_path), "--no-plots"]) == 0
    out = capsys.readouterr().out
    stats = pd.read_csv(tmp_path / "stats.csv")
    pooling = stats[(stats.factor == "pooling") & (stats.category == "STS")]
    attention = stats[(stats.factor == "attention") & (stats.category == "Classification")]
    assert sorted(pooling.effect) == ["main (averaged over attention)", "simple (attention=bidirectional)",
                                      "simple (attention=causal)"]
    assert sorted(attention.effect) == ["main (averaged over pooling)", "simple (pooling=eos_last)",
                                        "simple (pooling=mean)"]
    # the paper's presets name no pair here: the family is the factors' (6 pairs × 2 categories), 10 tasks each
    family = stats[stats.family == "primary"]
    assert len(family) == 12 and set(family.comparisons.str.contains("factors")) == {True}
    np.testing.assert_allclose(pooling.mean_diff, 0.06, atol=0.01)
    np.testing.assert_allclose(attention.mean_diff, -0.05, atol=0.01)
    assert pooling.reject_seed_holm.all() and attention.reject_seed_holm.all()
    null = stats[(stats.factor == "pooling") & (stats.category == "Classification")]
    assert not null.reject_seed_holm.any()
    assert "Holm family (factors;" in out and "factor effects" in out
    report = (tmp_path / "report.md").read_text()
    assert "The family is the grid's own factors" in report
    section = report.split("## Effects of the grid's factors")[1].split("\n## ")[0]
    verdicts = [line for line in section.splitlines() if line.startswith("- ")]
    assert len(verdicts) == 6
    for line in verdicts:
        if line.startswith("- pooling"):
            assert re.search(r"moved STS \+0\.0[56]", line) and "seed-aware p (Holm)" in line
            assert "Classification" not in line
        else:
            assert re.search(r"moved Classification -0\.0[456]", line) and "STS" not in line


def test_explicit_family_is_kept_even_when_empty(two_by_two, tmp_path):
    result = analyze(two_by_two, out_dir=tmp_path, plots=False, family=["paper"])
    assert result.family.presets == ("pooling_causal", "pooling_bidirectional", "attention_trainable")
    assert result.family.size == 0 and result.family.basis == ""
    assert (result.stats["factor"] == "pooling").any()          # still run, as exploratory tests


def test_tasks_needed_follows_holm_on_the_floors():
    assert tasks_needed(1, 0.05, "two-sided") == 6                # 2/2^6 = 0.031
    assert tasks_needed(6, 0.05, "two-sided") == 8                # 6 · 2/2^8 = 0.047
    assert tasks_needed(28, 0.05, "two-sided") == 11
    assert tasks_needed(1, 0.05, "greater") == 5                  # 1/2^5 = 0.031


def test_unreachable_tests_are_listed_with_what_would_make_them_reachable(tmp_path, capsys):
    root = grid_sweep(tmp_path / "s", seeds=(0,), tasks=(STS[:3], CLF[:7]))
    assert main([str(root), "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    assert "cannot reach α" in capsys.readouterr().out
    stats = pd.read_csv(tmp_path / "out" / "stats.csv")
    sts = stats[stats.category == "STS"]
    assert not sts.reachable.any() and (sts.seeds_needed == 2).all()
    # 12 registered family tests (6 pairs × 2 categories): Holm needs 12 · 2/2^n < 0.05, n ≥ 9
    assert set(sts[sts.family != "exploratory"].tasks_needed) == {9}
    report = (tmp_path / "out" / "report.md").read_text()
    listing = report.split("## Tests that cannot reach α")[1].split("\n## ")[0]
    assert report.index("## Tests that cannot reach α") < report.index("## Scores by category")
    assert "family (screened out) | STS | 6 | 3 |" in listing and "≥ 9 tasks in the category" in listing
    assert "seed-aware test: 1 seed(s) per design (needs 2)" in listing and "≥ 2 seeds per design" in listing
    # Classification has 7 tasks: reachable alone (2/2^7), not in a family of 12 (needs 9): listed, not dropped
    clf = stats[(stats.category == "Classification") & (stats.family != "exploratory")]
    assert len(clf) == 6 and not clf.reachable.any() and "| Classification | 6 | 7 |" in listing


def test_main_effect_is_the_difference_of_marginal_means(two_by_two, tmp_path):
    result = analyze(two_by_two, out_dir=tmp_path, plots=False)
    tables = pd.read_csv(tmp_path / "tables.csv")
    task_means = tables[tables.category == "STS"].groupby(["pooling", "attention", "task"])["score"].mean()
    marginal = task_means.groupby(["pooling", "task"]).mean()          # over attention
    expected = (marginal["mean"] - marginal["eos_last"]).mean()
    row = result.stats[(result.stats.factor == "pooling") & (result.stats.category == "STS")
                       & result.stats.effect.str.startswith("main")]
    assert row.reference.item() == "eos_last/*" and row.candidate.item() == "mean/*"
    assert row.mean_diff.item() == pytest.approx(expected, abs=1e-4)   # differences rounded to 4 decimals
    assert row.seeds_reference.item() == 3 and row.n.item() == len(STS)


def test_with_several_models_each_design_every_model_has_is_pooled_over_them_against_the_pooled_baseline():
    """The paper's five designs on two models (not a factorial in pooling × attention): each design is also
    compared pooled over the models, as the paper's pooled table; a design one model lacks is not pooled."""
    from analysis.factors import ALL, marginals, pooled_over_models

    paper = [("eos_last", "causal"), ("last_layer_trainable", "causal"), ("multi_layer_trainable", "causal"),
             ("last_layer_trainable", "bidirectional"), ("multi_layer_trainable", "bidirectional")]
    designs = [Design(m, p, a) for m in ("qwen", "smol") for p, a in paper] + [Design("smol", "mean", "causal")]
    context = PairContext()
    pooled = {d: members for d, members in marginals(designs, context).items() if d.model == ALL}
    assert sorted((d.pooling, d.attention) for d in pooled) == sorted(paper), "mean/causal: only one model has it"
    assert all(sorted(m.model for m in members) == ["qwen", "smol"] for members in pooled.values())
    pairs = pooled_over_models(designs, context)
    assert [(r.pooling, r.attention) for r, _ in pairs] == [("eos_last", "causal")] * 4
    assert sorted((c.pooling, c.attention) for _, c in pairs) == sorted(paper[1:])
    assert set(pairs) <= set(factor_pairs(designs, context))
    assert pooled_over_models([d for d in designs if d.model == "smol"], context) == []


def test_the_pooled_design_scores_are_the_mean_over_the_models(tmp_path):
    """A design pooled over two models scores each task as the mean of the models' seed-averaged scores."""
    from analysis.factors import ALL, add_marginals, marginals

    designs = [Design(m, p, "causal") for m in ("a", "b") for p in ("eos_last", "mean")]
    rows = [{"design": d, "category": "STS", "in_domain": False, "task": t, "mean": s, "std": 0.0, "n_seeds": 1}
            for d, scores in zip(designs, ([0.1, 0.2], [0.3, 0.5], [0.5, 0.4], [0.7, 0.9]))
            for t, s in zip(("t1", "t2"), scores)]
    means, _ = add_marginals(pd.DataFrame(rows), None, marginals(designs, PairContext()))
    pooled = means[means["design"] == Design(ALL, "mean", "causal")].set_index("task")["mean"]
    assert pooled.to_dict() == pytest.approx({"t1": (0.3 + 0.7) / 2, "t2": (0.5 + 0.9) / 2})


def test_the_category_table_and_report_show_each_design_pooled_over_the_models(tmp_path):
    """The paper's pooled table: beside each model's row, the design pooled over the models (task score = the
    models' mean), in the score table with the seeds its members share, and in the difference table."""
    from analysis.factors import ALL

    rng = np.random.default_rng(1)
    base = {t: float(rng.uniform(0.2, 0.8)) for t in STS}
    per_model = {}
    for model in ("qwen", "smol"):
        for pooling in ("eos_last", "mean"):
            for seed in (0, 1):  # mean pooling is better on every task: its pooled test is significant
                shift = 0.1 if pooling == "mean" else 0.0
                scores = {t: ("STS", round(base[t] + shift + float(rng.normal(0, 0.01)), 4)) for t in STS}
                per_model[(model, pooling, seed)] = scores
                write_cell(tmp_path / "s", model, pooling, "causal", seed, scores)
    result = analyze(tmp_path / "s", out_dir=tmp_path / "out", plots=False)
    table = result.table.set_index(["design", "column"])
    for pooling in ("eos_last", "mean"):
        expected = np.mean([np.mean([per_model[(m, pooling, s)][t][1] for t in STS])
                            for m in ("qwen", "smol") for s in (0, 1)])
        row = table.loc[(Design(ALL, pooling, "causal"), "STS")]
        assert row["mean"] == pytest.approx(expected, abs=1e-9) and row["n_seeds"] == 2
    report = (tmp_path / "out" / "report.md").read_text()
    scores_section = report.split("## Scores by category")[1].split("\n## ")[0]
    pooled_line = next(line for line in scores_section.splitlines() if line.startswith("| */mean/causal"))
    assert "| 2 |" in pooled_line  # the seeds its members share, not "no finished cell"
    differences = report.split("## Difference from the baseline")[1].split("\n## ")[0]
    pooled_difference = next(line for line in differences.splitlines() if line.startswith("| */mean/causal"))
    assert "*/eos_last/causal" in pooled_difference
    assert re.search(r"\+0\.\d{4}\*", pooled_difference), "the pooled test's mark (p < 0.05), as per-model rows have"
