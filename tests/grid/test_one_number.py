"""One number per thing: a cell's category means agree, to the printed precision, in its console table,
category_scores.json, its W&B summary, the exported model card and the analysis tables."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT, TINY, launch

# out-of-domain STS (2 tasks) and Clustering (1), in-domain Clustering (WordNet) apart
TASKS = "eval.tasks=[LeeDocumentSTS,WordSim353STS,RogetCategoryClustering,WordNetLexnameClustering]"
ROW = re.compile(r"^\s*\|?\s*(?P<name>[A-Za-z* ()-]+?)\s*\|?\s+(?P<mean>-?\d+\.\d{4})\s*\|?\s+(?P<tasks>\d+)\s*\|?$")


def table_rows(text: str) -> dict[str, str]:
    return {m["name"].strip("* "): m["mean"] for m in map(ROW.match, text.splitlines()) if m}


def test_category_scores_split_as_the_analysis_does():
    from embedgrid.evaluate.run import category_scores

    scores = {"A": {"category": "Clustering", "main_score": 0.5}, "B": {"category": "STS", "main_score": 0.7},
              "C": {"category": "STS", "main_score": 0.3},
              "W": {"category": "Clustering", "main_score": 0.9, "in_domain": True},
              "R": {"category": "Reranking", "main_score": 0.1, "in_domain": True}}
    out = category_scores(scores, offline_only=True, suite="offline_small")
    assert list(out["means"]) == ["STS", "Clustering"], "out-of-domain only, in the paper's column order"
    assert out["means"]["Clustering"] == 0.5 and out["average_of_category_means"] == pytest.approx(0.5)
    assert out["mean_of_tasks"] == pytest.approx(0.5)
    assert out["in_domain"]["means"] == {"Clustering": 0.9, "Reranking": 0.1}
    why = out["not_evaluated"]
    assert "in-domain" in why["Reranking"] and "offline" in why["Summarization"]
    assert why["Retrieval"] == "no task of this category in eval.tasks (eval=offline_small)"
    assert "category_scores.json" not in json.dumps(why)


def test_usage_asks_for_remote_code_only_for_embedgrid_pooling_modules():
    from types import SimpleNamespace

    from embedgrid.export.card import usage

    def encoder(target):
        return SimpleNamespace(spec=SimpleNamespace(pooling={"_target_": target}))

    assert usage(encoder("embedgrid.model.pooling.MeanPooling")) == "SentenceTransformer(PATH)"
    assert usage(encoder("embedgrid.model.pooling.EosLastPooling")) == "SentenceTransformer(PATH)"
    assert usage(encoder("embedgrid.model.pooling.LatentAttentionPooling")) == \
        "SentenceTransformer(PATH, trust_remote_code=True)"


def test_console_names_why_a_category_is_not_evaluated():
    from embedgrid.console import category_table

    table = category_table({"means": {"STS": 0.5}, "tasks_per_category": {"STS": 1},
                            "average_of_category_means": 0.5, "mean_of_tasks": 0.5,
                            "in_domain": {"means": {"Clustering": 0.9}, "tasks_per_category": {"Clustering": 1}},
                            "not_evaluated": {"Retrieval": "no task of this category in eval.tasks",
                                              "Reranking": "no task of this category in eval.tasks"}})
    assert table.splitlines()[-1] == "  not evaluated: Retrieval, Reranking (no task of this category in eval.tasks)"
    assert table_rows(table) == {"STS": "0.5000", "average of categories": "0.5000",
                                 "average of tasks": "0.5000", "Clustering (in-domain)": "0.9000"}


@pytest.mark.slow
def test_console_json_wandb_card_and_analysis_agree_for_one_cell(tmp_path, launch_env):
    from embedgrid.export import export_cell
    from embedgrid.grid.cell import wandb_summary

    cell = tmp_path / "sweep" / "cell"
    proc = launch([*TINY, TASKS, f"hydra.run.dir={cell}"], launch_env)
    console = table_rows(proc.stdout)
    categories = json.loads((cell / "category_scores.json").read_text())
    scores = json.loads((cell / "scores.json").read_text())
    expected = {**{c: v for c, v in categories["means"].items()},
                "average of categories": categories["average_of_category_means"],
                "average of tasks": categories["mean_of_tasks"],
                **{f"{c} (in-domain)": v for c, v in categories["in_domain"]["means"].items()}}
    assert set(expected) == {"STS", "Clustering", "Clustering (in-domain)", "average of categories",
                             "average of tasks"}
    printed = {k: f"{v:.4f}" for k, v in expected.items()}
    assert console == printed

    logged = wandb_summary(scores, categories)
    wandb_names = {"average of categories": "category/average", "average of tasks": "category/average_tasks"}
    assert {k: f"{logged[wandb_names.get(k, 'category/' + k)]:.4f}" for k in expected} == printed

    out = export_cell(cell, tmp_path / "export")
    card = (out / "README.md").read_text()
    assert table_rows(card.split("## Scores", 1)[1]) == printed
    assert "https://github.com/)" not in card and "SentenceTransformer(PATH)" in card  # mean: ST's own pooling
    (data_line,) = [line for line in card.splitlines() if line.startswith("| training data | `wordnet`: data ")]
    assert "sha256:" in data_line

    analysis = subprocess.run([sys.executable, "-m", "analysis", str(tmp_path / "sweep"), "--no-plots"], cwd=ROOT,
                              env=launch_env, capture_output=True, text=True, timeout=300)
    assert analysis.returncode == 0, analysis.stderr[-3000:]
    import pandas as pd

    tables = pd.read_csv(tmp_path / "sweep" / "analysis" / "categories.csv")
    columns = {"average of categories": "Mean (Category)", "average of tasks": "Mean (Task)"}
    by_column = dict(zip(tables["column"], tables["mean"]))
    assert {k: f"{by_column[columns.get(k, k)]:.4f}" for k in expected} == printed

    meta = json.loads(next((cell / "mteb").rglob("model_meta.json")).read_text())
    assert any(name.startswith("WordNet 3.0 ") and "sha256:" in name for name in meta["training_datasets"])
    assert "WordNetLexnameClustering" in meta["training_datasets"]
