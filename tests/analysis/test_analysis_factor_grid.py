"""A real 2×2 grid (pooling × attention, model=tiny, 2 seeds, eval=offline_small) → the sweep's own analysis derives
the factors: pooling-only and attention-only comparisons in stats.csv, the reachability listing, the factor table."""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from tests.helpers import ROOT

STS = ["LeeDocumentSTS", "WordSim353STS", "SimLex999STS", "MENSTS", "MTurk287STS", "RG65STS"]


@pytest.mark.slow
def test_2x2_grid_gets_factor_comparisons_and_says_what_cannot_reach_alpha(tmp_path, launch_env):
    sweep = tmp_path / "g2x2"
    args = ["-m", "model=tiny", "train.max_steps=2", "train.batch_size=4", "train.checkpoint_every=2", "threads=1",
            "train.progress_bar=false", "logger=none", "data.loader.limit=64", "eval=offline_small",
            f"eval.tasks=[{','.join(STS)}]", "pooling=mean,eos_last", "attention=causal,bidirectional", "seed=0,1",
            f"hydra.sweep.dir={sweep}", "analyze=true"]
    proc = subprocess.run([sys.executable, str(ROOT / "launch.py"), *args], cwd=ROOT, env=launch_env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = sweep / "analysis"
    assert "Holm family (factors;" in proc.stdout and "factor effects" in proc.stdout

    stats = pd.read_csv(out / "stats.csv")
    sts = stats[stats.category == "STS"]
    pooling, attention = sts[sts.factor == "pooling"], sts[sts.factor == "attention"]
    assert sorted(pooling.effect) == ["main (averaged over attention)", "simple (attention=bidirectional)",
                                      "simple (attention=causal)"]
    assert sorted(attention.effect) == ["main (averaged over pooling)", "simple (pooling=eos_last)",
                                        "simple (pooling=mean)"]
    assert set(pooling.reference) == {"eos_last/causal (#1)", "eos_last/bidirectional", "eos_last/*"}
    factor_tests = pd.concat([pooling, attention])
    assert factor_tests.p_seed.notna().all()                  # 2 seeds, 6 tasks: the seed-aware test runs
    # 6 family tests of 6 tasks: Holm's best is 6 · 2/2^6 ≥ 0.05, so all are listed as unreachable (8 tasks needed)
    assert (factor_tests.family == "screened out").all() and set(factor_tests.tasks_needed) == {8}

    report = (out / "report.md").read_text()
    listing = report.split("## Tests that cannot reach α")[1].split("\n## ")[0]
    assert "family (screened out) | STS | 6 | 6 |" in listing and "≥ 8 tasks in the category" in listing
    effects = report.split("## Effects of the grid's factors")[1].split("\n## ")[0]
    assert effects.count("\n- pooling:") == 3 and effects.count("\n- attention:") == 3
    provenance = report.split("## Provenance")[1].split("\n## ")[0]
    assert "library torch" in provenance and "all designs | 8 |" in provenance
    assert proc.stdout.rstrip().splitlines()[-1].startswith("mean/bidirectional")   # ends with the category table
