"""The real model=tiny paper grid (experiment=paper_grid, zero-shot, mteb mock tasks) → the sweep's analysis."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

from tests.helpers import ROOT, TINY

LABELS = ["eos_last/causal (#1)", "last_layer_trainable/causal (#2)", "multi_layer_trainable/causal (#3)",
          "last_layer_trainable/bidirectional (#4)", "multi_layer_trainable/bidirectional (#5)"]
CATEGORIES = ["STS", "Classification", "Retrieval", "Clustering", "Reranking", "PairClassification", "Summarization"]


@pytest.mark.slow
def test_paper_grid_report(tmp_path, launch_env):
    sweep = tmp_path / "paper_grid"
    # train.max_steps=0: the designs' heads stay at their seeded init, which is all the report needs (seconds).
    tiny = [o for o in TINY if not o.startswith(("train.max_steps=", "eval=", "eval."))]
    args = ["-m", "experiment=paper_grid", *tiny, "train.max_steps=0", "eval=mteb_mock", f"hydra.sweep.dir={sweep}",
            "analyze=true"]
    proc = subprocess.run([sys.executable, str(ROOT / "launch.py"), *args], cwd=ROOT, env=launch_env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = sweep / "analysis"
    assert f"report: {out / 'report.md'}" in proc.stdout          # the sweep ran `python -m analysis` itself
    assert all(label in proc.stdout for label in LABELS)            # the compact table on stdout

    report = (out / "report.md").read_text()
    table = report.split("## Scores by category")[1].split("##")[0]
    for label in LABELS:
        assert f"| {label} | 1 |" in table                          # one row per design, 1 seed
    assert all(f"{c} (n=1)" in table for c in CATEGORIES)
    assert "None: every cell found is done" in report

    tables = pd.read_csv(out / "tables.csv")
    assert len(tables) == 5 * len(CATEGORIES) and set(tables["design"]) == set(LABELS)
    stats = pd.read_csv(out / "stats.csv")
    causal = stats[stats.comparisons.str.contains("pooling_causal")][["reference", "candidate"]].drop_duplicates()
    assert len(causal) == 3 and stats["p_unreachable"].all()          # one task per category: nothing testable
    assert len(stats[stats.comparisons.str.contains("all_pairs")][["reference", "candidate"]].drop_duplicates()) == 10
    assert not (stats.family == "primary").any() and "The family is empty" in report   # all screened out (n = 1)
    assert proc.stdout.rstrip().splitlines()[-1].startswith(LABELS[-1])    # the sweep ends with the category table

    norms = pd.read_csv(out / "layer_weights.csv")
    assert set(norms["design"]) == {LABELS[2], LABELS[4]} and sorted(set(norms["layer"])) == [1, 2]
    for cell, rows in norms.groupby("cell"):
        weights = load_file(str(sweep / cell / "model" / "pooling.safetensors"))["layer_weights"]
        np.testing.assert_allclose(rows.sort_values("layer")["l2_norm"], np.linalg.norm(weights, axis=1), rtol=1e-5)
    for plot in ("categories", "cd_all_tasks", "layer_weights"):
        assert (out / "plots" / f"{plot}.png").stat().st_size > 1000
