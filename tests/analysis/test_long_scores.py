"""scores_long.csv: every report carries its per-task, per-seed scores with the design's factor columns."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import analyze
from analysis.long_scores import LONG_FILE, derive_from_report, designs_of, from_tables_csv, read_long
from tests.fixtures.analysis_sweep import paper_sweep, write_cell

REPORTS = Path(__file__).resolve().parents[2] / "docs" / "reports"
ANALYSIS_REPORTS = ("paper_grid_smollm2", "default_vs_zero_shot_smollm2", "default_bf16_vs_fp32_smollm2")


def test_a_report_carries_every_score_it_read(tmp_path):
    written = paper_sweep(tmp_path, seeds=(0, 1))
    result = analyze(tmp_path, plots=False, presets=["vs_baseline"], family="vs_baseline")
    long = read_long(result.files["scores_long"])
    assert len(long) == len(written)
    got = {(r.pooling, r.attention, int(r.seed), r.task): r.score for r in long.itertuples()}
    assert got == pytest.approx(written)
    assert set(long["category"]) == {"STS", "Classification", "PairClassification"}
    assert {d.label(with_model=False) for d in designs_of(long)} >= {"eos_last/causal (#1)"}


def test_by_keys_become_factor_columns(tmp_path):
    for steps in (0, 64):
        for seed in (0, 1):
            write_cell(tmp_path, "tiny", "mean", "causal", seed,
                       {f"STS{i}": ("STS", 0.5 + steps / 1000 + i / 100 + seed / 1e4) for i in range(6)},
                       extra_config={"train": {"max_steps": steps}})
    result = analyze(tmp_path, plots=False, by=("train.max_steps",), twin="train.max_steps=0", presets=["twins"],
                     family="twins", baseline=("mean", "causal"))
    long = read_long(result.out_dir / LONG_FILE)
    assert list(long.columns[6:10]) == ["model", "pooling", "attention", "train.max_steps"]
    assert sorted(set(long["train.max_steps"])) == ["0", "64"]
    # the design rebuilt from the file is the design the analysis used (extras as the strings collect() makes)
    assert set(designs_of(long)) == set(result.labels)
    # and the label → factor parse used for reports written before the file existed gives the same table
    tables = pd.read_csv(result.out_dir / "tables.csv", dtype=str, keep_default_na=False)
    derived = from_tables_csv(tables)
    assert derived.drop(columns=["score", "seed", "in_domain"]).equals(
        pd.read_csv(result.out_dir / LONG_FILE, dtype=str, keep_default_na=False).drop(
            columns=["score", "seed", "in_domain"]))


@pytest.mark.parametrize("name", ANALYSIS_REPORTS)
def test_committed_reports_long_scores_match_their_tables(name, tmp_path):
    """The committed long tables were derived from each report's tables.csv (the sweeps are not kept); they must
    reproduce the report's own category means (mean over tasks per seed, then over seeds)."""
    report = REPORTS / name
    long = read_long(report / LONG_FILE)
    copy = tmp_path / name
    copy.mkdir()
    (copy / "tables.csv").write_bytes((report / "tables.csv").read_bytes())
    assert read_long(derive_from_report(copy)).equals(long)      # not stale
    categories = pd.read_csv(report / "categories.csv")
    for (design, category), group in long[~long["in_domain"]].groupby(["design", "category"]):
        per_seed = group.groupby("seed")["score"].mean()
        row = categories[(categories.design == design) & (categories.column == category)].iloc[0]
        assert per_seed.mean() == pytest.approx(row["mean"], abs=1e-9)
        assert int(row["n_seeds"]) == len(per_seed) and int(row["n_tasks"]) == group["task"].nunique()
    assert np.isfinite(long["score"]).all()


def test_a_damaged_long_table_is_named(tmp_path):
    bad = tmp_path / LONG_FILE
    bad.write_text("design,seed,task\nx,0,t\n")
    with pytest.raises(ValueError, match="missing column.*category"):
        read_long(bad)
