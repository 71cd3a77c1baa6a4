"""In-domain tasks (text from the training source) are reported apart; W&B logging follows the cells' logger."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from analysis import analyze, collect
from analysis.__main__ import main
from tests.fixtures.analysis_sweep import write_cell

STS = [f"STS{i}" for i in range(8)]
WORDNET = [f"WordNetRetrieval{i}" for i in range(6)]
WANDB = {"_target_": "embedgrid.logger.WandbLogger", "project": "embedgrid-test", "mode": "offline"}


def domain_sweep(root, logger=None):
    rng = np.random.default_rng(0)
    base = {t: float(rng.uniform(0.3, 0.7)) for t in STS + WORDNET}
    written = {}
    for pooling, sts_gain, wordnet_gain in (("eos_last", 0.0, 0.0), ("mean", 0.02, 0.2)):
        for seed in (0, 1, 2):
            scores = {t: ("STS", round(base[t] + sts_gain + rng.normal(0, 0.002), 4)) for t in STS}
            scores.update({t: ("Retrieval", round(base[t] + wordnet_gain + rng.normal(0, 0.002), 4), True)
                           for t in WORDNET})
            scores["STS0"] = (*scores["STS0"], False)         # explicit false and missing (STS1..7) mean the same
            write_cell(root, "tiny", pooling, "causal", seed, scores, logger=logger)
            written.update({(pooling, seed, t): v[1] for t, v in scores.items()})
    return written


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    root = tmp_path_factory.mktemp("domains")
    written = domain_sweep(root)
    return root, written, analyze(root, plots=False, family="vs_baseline")


def test_in_domain_columns_follow_the_primary_ones(domains):
    root, written, result = domains
    categories = pd.read_csv(root / "analysis" / "categories.csv")
    mean = categories[categories.design == "mean/causal"].set_index("column")
    per_seed = lambda tasks: [np.mean([written[("mean", s, t)] for t in tasks]) for s in (0, 1, 2)]  # noqa: E731
    # Mean (Task) is the primary result: out-of-domain tasks only
    assert mean.loc["Mean (Task)", "mean"] == pytest.approx(np.mean(per_seed(STS)))
    assert mean.loc["Mean (Task)", "n_tasks"] == 8 and mean.loc["Mean (Category)", "mean"] == pytest.approx(
        np.mean(per_seed(STS)))
    assert mean.loc["Retrieval (in-domain)", "mean"] == pytest.approx(np.mean(per_seed(WORDNET)))
    assert mean.loc["Mean (in-domain Task)", "n_tasks"] == 6
    tables = pd.read_csv(root / "analysis" / "tables.csv")
    assert tables.groupby("task")["in_domain"].first().to_dict() == {**{t: False for t in STS},
                                                                     **{t: True for t in WORDNET}}
    report = result.report
    header = next(line for line in report.split("## Scores by category")[1].splitlines() if line.startswith("| "))
    assert header.index("Mean (Category)") < header.index("Retrieval (in-domain) (n=6)") < header.index(
        "Mean (in-domain Task) (n=6)")
    assert "6 task(s) whose text comes from the training source" in report and "WordNetRetrieval0" in report


def test_family_is_out_of_domain_only(domains):
    _, _, result = domains
    stats = result.stats.set_index("category")
    assert stats.loc["STS", "family"] == "primary" and result.family.size == 1
    assert stats.loc["Retrieval (in-domain)", "family"] == "exploratory"
    assert "in-domain" in stats.loc["Retrieval (in-domain)", "family_note"]
    assert np.isnan(stats.loc["Retrieval (in-domain)", "p_holm"])
    pooled = stats.loc["All out-of-domain tasks"] if "All out-of-domain tasks" in stats.index else None
    assert pooled is None   # one out-of-domain category: the pooled test would repeat it


def test_text_table_separates_in_domain(domains):
    _, _, result = domains
    lines = result.category_table().splitlines()
    assert lines[0].split("|")[0].split() == ["design", "seeds", "STS", "(8)", "Mean", "(Task)", "(8)"]
    assert lines[0].split("|")[1].split() == ["Retrieval", "in-domain", "(6)", "Mean", "(in-domain", "Task)", "(6)"]
    assert [line.split()[0] for line in lines[1:]] == ["eos_last/causal", "mean/causal"]


def test_conflicting_flags_count_as_in_domain(tmp_path):
    write_cell(tmp_path, "tiny", "eos_last", "causal", 0, {"A": ("STS", 0.5, True), "B": ("STS", 0.6)})
    write_cell(tmp_path, "tiny", "mean", "causal", 0, {"A": ("STS", 0.4, False), "B": ("STS", 0.7)})
    collection = collect(tmp_path)
    assert collection.scores.groupby("task")["in_domain"].all().to_dict() == {"A": True, "B": False}
    assert [(p.kind, p.where) for p in collection.problems] == [("domain conflict", "A")]


def wandb_records(out_dir, run_id: str, needle: bytes) -> bytes:
    (run_dir,) = sorted((out_dir / "wandb").glob(f"offline-run-*-{run_id}"))
    records, deadline = b"", time.monotonic() + 30
    while needle not in records and time.monotonic() < deadline:   # wandb-core flushes asynchronously
        time.sleep(0.2)
        records = (run_dir / f"run-{run_id}.wandb").read_bytes()
    return records


def test_wandb_auto_follows_the_cells_logger(tmp_path, capsys):
    logged = tmp_path / "logged"
    domain_sweep(logged, logger=WANDB)
    assert main([str(logged), "--no-plots", "--wandb-auto", "--family", "vs_baseline"]) == 0
    out = capsys.readouterr().out
    run_id = out.split("W&B:    analysis run ")[1].split()[0]
    records = wandb_records(logged / "analysis", run_id, b"analysis/category_table")
    for needle in (b"analysis/stats", b"analysis/family", b"analysis/categories", b"analysis/category_table",
                   b"synthetic", b"embedgrid-test", b"analysis/report"):
        assert needle in records, needle

    quiet = tmp_path / "quiet"
    domain_sweep(quiet, logger={"_target_": "embedgrid.logger.NullLogger"})
    result = analyze(quiet, plots=False, wandb="auto", family="vs_baseline")
    assert "wandb_run" not in result.files and not (quiet / "analysis" / "wandb").exists()
    disabled = tmp_path / "disabled"
    domain_sweep(disabled, logger={**WANDB, "mode": "disabled"})
    assert "wandb_run" not in analyze(disabled, plots=False, wandb="auto", family="vs_baseline").files
