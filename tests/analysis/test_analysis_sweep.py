"""A synthetic sweep (seeds, a failed cell, NaN scores, ...) through `python -m analysis`: tables, stats, flags."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file
from scipy.stats import wilcoxon
from statsmodels.stats.multitest import multipletests

from analysis import Design, analyze, collect
from analysis.__main__ import main
from analysis.errors import OptionError
from tests.fixtures.analysis_sweep import TASKS, paper_sweep, write_cell

D = {n: ("tiny", p, a) for n, (p, a) in enumerate(
    [("eos_last", "causal"), ("last_layer_trainable", "causal"), ("multi_layer_trainable", "causal"),
     ("last_layer_trainable", "bidirectional"), ("multi_layer_trainable", "bidirectional")], start=1)}


def set_score(sweep: Path, pooling, attention, seed, task, value):
    for cell in sweep.glob(f"tiny-{pooling}-{attention}-seed{seed}-*"):
        scores = json.loads((cell / "scores.json").read_text())
        scores[task]["main_score"] = value
        (cell / "scores.json").write_text(json.dumps(scores))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep") / "paper"
    written = paper_sweep(root, seeds=(0, 1, 2), effects={
        ("multi_layer_trainable", "bidirectional"): {"STS": 0.03, "Classification": -0.02},
        ("last_layer_trainable", "causal"): {"STS": 0.02}})
    # NaN in one seed (the task mean uses the other two) and in every seed (the task drops out of the tests).
    set_score(root, "multi_layer_trainable", "bidirectional", 0, "STS0", float("nan"))
    for seed in (0, 1, 2):
        set_score(root, "last_layer_trainable", "bidirectional", seed, "STS1", None)
    written = {k: (math.nan if (k[:3] == ("multi_layer_trainable", "bidirectional", 0) and k[3] == "STS0") or
                   (k[:2] == ("last_layer_trainable", "bidirectional") and k[3] == "STS1") else v)
               for k, v in written.items()}
    write_cell(root, "tiny", "mean", "causal", 0, None, status="failed", error="RuntimeError: CUDA out of memory")
    write_cell(root, "tiny", "mean", "causal", 1, {"STS0": ("STS", 0.5)}, status="partial")
    (root / "tiny-never-started" / ".hydra").mkdir(parents=True)
    (root / "tiny-never-started" / ".hydra" / "config.yaml").write_text(
        "model: {name: tiny}\npooling: {name: mean}\nattention: {name: bidirectional}\nseed: 0\ngrid: paper\n")
    return root, written


@pytest.fixture(scope="module")
def result(sweep):
    return analyze(sweep[0])


def seed_mean(written, pooling, attention, task):
    values = [v for (p, a, s, t), v in written.items() if (p, a, t) == (pooling, attention, task)]
    return np.nanmean(values) if not all(math.isnan(v) for v in values) else math.nan


def test_tables_csv_is_long_and_complete(result, sweep):
    root, written = sweep
    tables = pd.read_csv(root / "analysis" / "tables.csv")
    assert {"design", "task", "category", "score", "seed"} <= set(tables.columns)
    assert len(tables) == 5 * 3 * 17          # 5 designs × 3 seeds × 17 tasks; failed / partial cells excluded
    row = tables[(tables.pooling == "last_layer_trainable") & (tables.attention == "causal") & (tables.seed == 2)
                 & (tables.task == "Clf3")]
    assert row["score"].item() == written[("last_layer_trainable", "causal", 2, "Clf3")]
    assert tables["score"].isna().sum() == 4   # 1 + 3 NaN scores kept in the table, flagged


def test_category_table_is_seed_mean_of_task_means(result, sweep):
    root, written = sweep
    categories = pd.read_csv(root / "analysis" / "categories.csv")
    design = Design(*D[2])
    label = result.labels[design]
    per_seed = [np.mean([written[("last_layer_trainable", "causal", s, t)] for t in TASKS["STS"]]) for s in (0, 1, 2)]
    row = categories[(categories.design == label) & (categories.column == "STS")]
    assert row["mean"].item() == pytest.approx(np.mean(per_seed))
    assert row["std"].item() == pytest.approx(np.std(per_seed, ddof=1))
    assert row["n_seeds"].item() == 3
    nan_row = categories[(categories.design == result.labels[Design(*D[4])]) & (categories.column == "STS")]
    assert nan_row["n_tasks"].item() == 7 and nan_row["total_tasks"].item() == 8


def test_stats_equal_direct_scipy_and_holm(result, sweep):
    root, written = sweep
    stats = pd.read_csv(root / "analysis" / "stats.csv", keep_default_na=False, na_values=[""])
    pair = stats[(stats.reference == "last_layer_trainable/bidirectional (#4)")
                 & (stats.candidate == "multi_layer_trainable/bidirectional (#5)")]
    assert set(pair.category) == {"STS", "Classification", "PairClassification", "All out-of-domain tasks"}
    assert set(pair.comparisons) == {"pooling_bidirectional, all_pairs, factors"}   # one row, every preset named
    row = pair[pair.category == "Classification"].iloc[0]
    x = np.array([seed_mean(written, "multi_layer_trainable", "bidirectional", t) for t in TASKS["Classification"]])
    y = np.array([seed_mean(written, "last_layer_trainable", "bidirectional", t) for t in TASKS["Classification"]])
    direct = wilcoxon(np.round(x - y, 4))
    assert row["W"] == pytest.approx(float(direct.statistic)) and row["p"] == pytest.approx(float(direct.pvalue))
    assert row["n"] == 6 and row["median_diff"] == pytest.approx(np.median(np.round(x - y, 4)))
    assert row["rank_biserial"] < 0   # design 5 is worse on classification (effect −0.02)

    # STS1 has no score in any seed of design 4: excluded from its STS tests, and said so.
    sts = pair[pair.category == "STS"].iloc[0]
    assert sts["n"] == 7 and "STS1" in sts["excluded_tasks"]
    # design 5 keeps STS0 (two finite seeds), averaged without the NaN seed
    x = [seed_mean(written, "multi_layer_trainable", "bidirectional", t) for t in TASKS["STS"] if t != "STS1"]
    y = [seed_mean(written, "last_layer_trainable", "bidirectional", t) for t in TASKS["STS"] if t != "STS1"]
    assert sts["p"] == pytest.approx(float(wilcoxon(np.round(np.subtract(x, y), 4)).pvalue))


def test_one_family_each_test_once(result):
    stats = result.stats
    keys = [(frozenset((r, c)), k) for r, c, k in zip(stats.reference, stats.candidate, stats.category)]
    assert len(keys) == len(set(keys))                                   # no test twice, whatever the presets
    assert len(stats) == 10 * 4                                          # 10 pairs × (3 categories + pooled)
    # Registered: the paper's 6 pairs × 3 categories. By n alone: STS n = 8 (4 pairs) or 7 (pairs with design 4,
    # which lacks STS1) fit in one family (6 × 2/2^8 < 0.05); adding the n = 6 Classification tests would give
    # 12 × 2/2^8 > 0.05, so they and PairClassification (n = 3) are screened out.
    family = stats[stats.family == "primary"]
    assert result.family.registered == 18 and result.family.size == 6 == len(family)
    assert set(family.category) == {"STS"} and sorted(family.n) == [7, 7, 8, 8, 8, 8]
    np.testing.assert_allclose(family["p_holm"], multipletests(family["p"], method="holm")[1])
    assert (family.family_size == 6).all() and stats.loc[stats.family != "primary", "p_holm"].isna().all()
    floors = [2 / 2 ** n for n in sorted(family.n, reverse=True)]
    np.testing.assert_allclose(family.sort_values("n", ascending=False)["min_p_holm"],
                               multipletests(floors, method="holm")[1])
    screened = stats[stats.family == "screened out"]
    assert len(screened) == 12 and set(screened.category) == {"Classification", "PairClassification"}
    # the best Holm p a Classification test could get: Holm over the 6 STS floors and the 6 Classification ones
    best = multipletests(floors + [2 / 2 ** 6] * 6, method="holm")[1][-6:]
    np.testing.assert_allclose(screened[screened.category == "Classification"]["min_p_holm"], best)
    assert (best >= 0.05).all() and screened["p_unreachable"].all()
    # the pooled test and pairs no family preset names stay exploratory, with their raw p only
    explore = stats[stats.family == "exploratory"]
    assert set(explore[explore.category == "All out-of-domain tasks"].index) == set(
        stats[stats.category == "All out-of-domain tasks"].index)
    only_others = explore[explore.category != "All out-of-domain tasks"]
    assert set(only_others.comparisons) <= {"vs_baseline, all_pairs", "all_pairs"} and len(only_others) == 12
    # the Holm-aware seed p: same family, Holm over the crossed-bootstrap p-values
    np.testing.assert_allclose(family["p_seed_holm"], multipletests(family["p_seed"], method="holm")[1])
    assert (stats.seeds_reference == 3).all()
    # run where there are enough tasks for a task bootstrap (≥ 6), said so where not
    assert stats.p_seed.notna().to_dict() == (stats.n >= 6).to_dict()
    assert stats.loc[stats.n < 6, "notes"].str.contains("seed-aware test not run: 3 task").all()


def test_without_the_power_screen_every_registered_test_stays(sweep, tmp_path):
    stats = analyze(sweep[0], power_screen=False, plots=False, out_dir=tmp_path).stats
    family = stats[stats.family == "primary"]
    assert len(family) == 18 and (family.family_size == 18).all()
    np.testing.assert_allclose(family["p_holm"], multipletests(family["p"], method="holm")[1])
    floors = multipletests([2 / 2 ** n for n in family.n], method="holm")[1]
    np.testing.assert_allclose(family["min_p_holm"], floors)
    # now 18 × 2/2^8 > 0.05: even the 8-task STS tests are flagged, though 2/2^8 alone would pass
    assert family["p_unreachable"].tolist() == (floors >= 0.05).tolist() and family["p_unreachable"].all()


def test_power_flags(result):
    stats = result.stats
    assert stats.loc[stats.category == "PairClassification", "p_unreachable"].all()   # 3 tasks: min p = 0.25
    classification = stats[stats.category == "Classification"]
    # 6 tasks: min p = 0.031 reaches 0.05 alone (exploratory pairs), not after Holm in the family
    assert classification.set_index("family")["p_unreachable"].groupby(level=0).all().to_dict() == {
        "exploratory": False, "screened out": True}
    assert not stats.loc[stats.family == "primary", "p_unreachable"].any()
    pairs = stats[stats.comparisons.str.contains("attention_trainable")][["reference", "candidate"]]
    assert len(pairs.drop_duplicates()) == 2 and all("causal" in r and "bidirectional" in c
                                                     for r, c in pairs.to_numpy())
    # MDE: family at α/m, exploratory at α; n = 3 can never detect anything
    family = stats[stats.family == "primary"].iloc[0]
    assert family["mde_alpha"] == pytest.approx(0.05 / 6) and np.isinf(
        stats.loc[stats.category == "PairClassification", "mde_dz"]).all()
    from analysis.power import minimum_detectable_effect

    assert family["mde_dz"] == minimum_detectable_effect(int(family["n"]), 0.05 / 6)
    assert family["mde"] == pytest.approx(family["mde_dz"] * family["sd_diff"])


def test_report_lists_problems_and_marks(result, sweep):
    root, _ = sweep
    report = (root / "analysis" / "report.md").read_text()
    for text in ("RuntimeError: CUDA out of memory", "partial", "tiny-never-started", "nan score", "STS1",
                 "| missing | tiny/mean/causal seed 2", "| mean/causal | 0 (no finished cell) | — |",
                 "## Difference from the baseline (eos_last + causal)",
                 "PairClassification (n=3)", "multipletests(method='holm')", "zero_method=`wilcox`",
                 "form **one** Holm family", "### Family members (m = 6)", "18 registered, 12 screened out",
                 "- Could not be significant whatever the scores", "n = 6: 6 test(s) (Classification",
                 "seed-aware p / Holm", "MDE d_z (score)", "no task is marked in-domain"):
        assert text in report, text
    # each test is one row of the report: family members and the others are disjoint tables
    family = report.split("### Family members")[1].split("### Other tests")[0]
    others = report.split("### Other tests")[1].split("## ")[0]
    def rows(text):   # table rows without the header
        return [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]

    assert len(rows(family)) == 6 and len(rows(others)) == 40 - 6
    kinds = [p.kind for p in result.problems]
    assert kinds.count("nan score") == 4 and kinds.count("failed") == 1 and "unrecorded" in kinds
    # design 5 beats the baseline on all 8 STS tasks by 0.03: p = 2/2^8 < 0.05 → marked in the difference table
    diff_row = next(line for line in report.splitlines()
                    if line.startswith("| multi_layer_trainable/bidirectional (#5) | eos_last/causal (#1)"))
    assert "+0.03" in diff_row.split("|")[3] and "*" in diff_row.split("|")[3]
    assert "°" in diff_row.split("|")[5]       # PairClassification: significance unreachable


def test_plots_and_layer_weights(result, sweep):
    root, _ = sweep
    plots = root / "analysis" / "plots"
    for name in ("categories", "differences", "cd_all_tasks", "cd_STS", "cd_Classification", "layer_weights"):
        assert (plots / f"{name}.png").stat().st_size > 1000, name
    assert not (plots / "cd_PairClassification.png").exists()   # 3 tasks: too few
    norms = pd.read_csv(root / "analysis" / "layer_weights.csv")
    assert set(norms["cell"].str.split("-").str[1]) == {"multi_layer_trainable"} and len(norms) == 6 * 4
    cell = norms["cell"].iloc[0]
    weights = load_file(str(root / cell / "model" / "pooling.safetensors"))["layer_weights"]
    np.testing.assert_allclose(norms[norms.cell == cell]["l2_norm"], np.linalg.norm(weights, axis=1), rtol=1e-5)


def test_cli_prints_table_and_report_path(sweep, tmp_path, capsys):
    root, _ = sweep
    assert main([str(root), "--out", str(tmp_path / "out"), "--compare", "pooling_causal,pooling_bidirectional,paper",
                 "--no-plots", "--zero-method", "pratt", "--family", "pooling_bidirectional"]) == 0
    out = capsys.readouterr().out
    assert f"report: {tmp_path / 'out' / 'report.md'}" in out
    stats = pd.read_csv(tmp_path / "out" / "stats.csv")
    assert set(stats.comparisons) == {"pooling_causal", "pooling_bidirectional", "attention_trainable"}
    assert set(stats.zero_method) == {"pratt"}
    # the family is the one pair of pooling_bidirectional, on each category that can reach significance
    family = stats[stats.family == "primary"]
    assert set(family.comparisons) == {"pooling_bidirectional"} and set(family.category) == {"STS",
                                                                                            "Classification"}
    assert "Holm family (pooling_bidirectional; out-of-domain, per category): 2 test(s)" in out
    assert not (tmp_path / "out" / "plots").exists()
    # the output ends with the design × category table, task counts in its header
    lines = out.rstrip().splitlines()
    header = max(i for i, line in enumerate(lines) if line.startswith("design "))
    assert lines[header].split() == ["design", "seeds", "STS", "(8)", "Classification", "(6)", "PairClassification",
                                     "(3)", "Mean", "(Task)", "(17)"]
    rows = {line.split("  ")[0]: line.split()[-5:] for line in lines[header + 1:]}
    assert len(rows) == 7 and rows["mean/bidirectional"] == ["0", "—", "—", "—", "—"]   # never-started design
    assert rows["last_layer_trainable/bidirectional (#4)"][0] == "(7/8)"                # lacks STS1 in every seed


def test_cli_errors(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([str(tmp_path), "--compare", "pooling"]) == 2
    assert "valid: paper, vs_baseline" in capsys.readouterr().err
    with pytest.raises(OptionError, match="famliy; valid: by, baseline"):
        analyze(tmp_path, famliy="all")
    with pytest.raises(OptionError, match="unknown comparison preset 'pair'; valid: paper, vs_baseline"):
        analyze(tmp_path, family="pair")
    assert main([str(tmp_path), "--family", "pooling"]) == 2
    assert "unknown comparison preset 'pooling'" in capsys.readouterr().err


def test_empty_and_baseline_less_sweeps_do_not_crash(tmp_path):
    empty = analyze(tmp_path)
    assert "No scores" in empty.report and empty.summary() == "no scores found"
    write_cell(tmp_path, "tiny", "mean", "causal", 0, {"A": ("STS", 0.5), "B": ("STS", 0.6)})
    write_cell(tmp_path, "tiny", "mean", "bidirectional", 0, {"A": ("STS", 0.4), "B": ("STS", 0.7)})
    result = analyze(tmp_path)
    assert "baseline missing" in [p.kind for p in result.problems]
    skipped = [p for p in result.problems if p.kind == "comparison skipped"]
    assert {p.where for p in skipped} == {"vs_baseline", "pooling_causal", "pooling_bidirectional",
                                          "attention_trainable"}
    other = analyze(tmp_path, baseline=("mean", "causal"), presets=["vs_baseline"])
    # one category only: its test is not repeated as "All tasks", and Mean (Task) takes its marks
    assert other.stats["category"].tolist() == ["STS"] and other.stats["n"].tolist() == [2]


def test_duplicates_are_reported_and_split_by_config_key(tmp_path):
    for lr in (1e-5, 1e-4):
        write_cell(tmp_path, "tiny", "mean", "causal", 0, {"A": ("STS", 0.5 + lr * 1000)},
                   extra_config={"train": {"lr": lr}})
    merged = collect(tmp_path)
    assert len(merged.mixes) == 1 and [d.key for d in merged.mixes[0].refused] == ["train.lr"]
    split = collect(tmp_path, by=("train.lr",))
    assert not [p for p in split.problems if p.kind == "duplicate"] and len(split.designs) == 2
    assert "train.lr=0.0001" in split.designs[0].label() + split.designs[1].label()


def test_wandb_logging_is_guarded(tmp_path, monkeypatch):
    import wandb

    root = tmp_path / "sweep"
    for pooling in ("eos_last", "mean"):
        write_cell(root, "tiny", pooling, "causal", 0, {"A": ("STS", 0.5), "B": ("STS", len(pooling) / 10)})
    result = analyze(root, out_dir=tmp_path / "a", plots=False, wandb=True, wandb_mode="disabled")
    assert result.files["wandb_run"]

    def broken(*args, **kwargs):
        raise RuntimeError("no network")

    monkeypatch.setattr(wandb, "init", broken)
    result = analyze(root, out_dir=tmp_path / "b", plots=False, wandb=True)
    assert result.files["wandb_run"] is None and (tmp_path / "b" / "report.md").exists()


def test_analysis_imports_neither_torch_nor_embedgrid(sweep, tmp_path):
    import subprocess
    import sys

    from tests.helpers import ROOT

    code = ("import sys; from analysis.__main__ import main; "
            f"code = main([{str(sweep[0])!r}, '--out', {str(tmp_path)!r}, '--no-plots', '--compare', 'paper']); "
            "heavy = [m for m in ('torch', 'embedgrid', 'transformers', 'mteb') if m in sys.modules]; "
            "assert code == 0 and not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "report.md").exists()


def test_unfinished_cells_only_on_request(tmp_path):
    write_cell(tmp_path, "tiny", "eos_last", "causal", 0, {"A": ("STS", 0.5)})
    write_cell(tmp_path, "tiny", "mean", "causal", 0, {"A": ("STS", 0.7)}, status="partial")
    assert set(collect(tmp_path).scores["pooling"]) == {"eos_last"}
    both = collect(tmp_path, include_unfinished=True)
    assert set(both.scores["pooling"]) == {"eos_last", "mean"}
    assert [p.kind for p in both.problems] == ["partial"]   # still listed as unfinished
