"""Crafted cell files (wrong shapes, wrong types, truncated, not UTF-8): listed as problems, never a crash."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from analysis import analyze, collect
from analysis.__main__ import main
from tests.fixtures.analysis_sweep import write_cell

GOOD = {f"STS{i}": ("STS", 0.5 + i / 100) for i in range(6)}

CELL_JSON = {   # name → cell.json text (the cell has a good scores.json beside it)
    "cell_is_list": "[1, 2, 3]",
    "cell_is_string": '"done"',
    "cell_truncated": '{"cell": "x", "status": "do',
    "cell_empty": "",
    "cell_not_utf8": b'{"status": "\xff\xfe"}',
    "cell_deep": "[" * 100000 + "]" * 100000,
    "config_is_list": json.dumps({"status": "done", "config": [1, 2], "design": {"pooling": "mean"}}),
    "status_is_number": json.dumps({"status": 1, "design": {"model": "tiny", "pooling": "mean",
                                                            "attention": "causal", "seed": 0}}),
    "fields_of_wrong_type": json.dumps({"status": "done", "cell": ["a"], "grid": 5, "error": {"x": 1},
                                        "design": "eos_last", "config": {"seed": float("inf")}}),
}
SCORES_JSON = {  # name → scores.json text (cell.json is fine)
    "scores_is_list": "[0.5, 0.6]",
    "scores_truncated": '{"STS0": {"category": "STS", "main_sc',
    "scores_entries_bad": json.dumps({
        "NoScore": {"category": "STS"},
        "StringScore": {"category": "STS", "main_score": "0.7"},
        "BoolScore": {"category": "STS", "main_score": True},
        "ListScore": {"category": "STS", "main_score": [0.7]},
        "HugeScore": {"category": "STS", "main_score": 10 ** 400},
        "NoCategory": {"main_score": 0.7},
        "NumberCategory": {"category": 3, "main_score": 0.7},
        "EntryIsNumber": 0.7,
        "BadDomain": {"category": "STS", "main_score": 0.7, "in_domain": "yes"},
        "Fine": {"category": "STS", "main_score": 0.7},
    }),
}


@pytest.fixture
def crafted(tmp_path):
    sweep = tmp_path / "sweep"
    write_cell(sweep, "tiny", "eos_last", "causal", 0, GOOD)
    write_cell(sweep, "tiny", "mean", "causal", 0, {t: (c, s + 0.01) for t, (c, s) in GOOD.items()})
    for name, text in CELL_JSON.items():
        cell = write_cell(sweep, "tiny", "mean", "bidirectional", 0, GOOD, name=name)
        (cell / "cell.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    for name, text in SCORES_JSON.items():
        cell = write_cell(sweep, "tiny", "last_layer_trainable", "causal", 0, GOOD, name=name)
        (cell / "scores.json").write_text(text)
    hydra = sweep / "hydra_list" / ".hydra"
    hydra.mkdir(parents=True)
    (hydra / "config.yaml").write_text("- just\n- a list\n")
    broken_yaml = sweep / "hydra_broken" / ".hydra"
    broken_yaml.mkdir(parents=True)
    (broken_yaml / "config.yaml").write_text("model: {name: [unclosed\n")
    weights = write_cell(sweep, "tiny", "multi_layer_trainable", "causal", 0, GOOD, name="weights_truncated")
    (weights / "model").mkdir()
    (weights / "model" / "pooling.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a")
    return sweep


def problems_at(problems, name: str, file: str) -> list[str]:
    return [p.detail for p in problems if p.where.endswith(f"{name}/{file}")]


def test_every_crafted_file_is_a_problem_with_its_path(crafted):
    collection = collect(crafted)
    problems = collection.problems
    for name in ("cell_is_list", "cell_is_string"):
        (detail,) = problems_at(problems, name, "cell.json")
        assert "expected a JSON object" in detail
    for name in ("cell_truncated", "cell_empty", "cell_not_utf8", "cell_deep"):
        (detail,) = problems_at(problems, name, "cell.json")
        assert "cell skipped" in detail and ("Error" in detail), detail
    assert any("'config' is list" in d for d in problems_at(problems, "config_is_list", "cell.json"))
    assert any("'status' is int" in d for d in problems_at(problems, "status_is_number", "cell.json"))
    wrong = problems_at(problems, "fields_of_wrong_type", "cell.json")
    for text in ("'cell' is list", "'grid' is int", "'error' is dict", "'design' is str"):
        assert any(d.startswith(text) for d in wrong), (text, wrong)

    for name in ("scores_is_list", "scores_truncated"):
        (detail,) = problems_at(problems, name, "scores.json")
        assert "expected a JSON object of tasks" in detail or "no scores of this cell are used" in detail
    bad = " | ".join(problems_at(problems, "scores_entries_bad", "scores.json"))
    for text in ("'NoScore': no 'main_score'", "'StringScore': main_score is str ('0.7')",
                 "'BoolScore': main_score is bool", "'ListScore': main_score is list", "'HugeScore': main_score 1",
                 "'NoCategory': category is null", "'NumberCategory': category is int",
                 "'EntryIsNumber': entry is float",
                 "'BadDomain': in_domain is str ('yes')"):
        assert text in bad, text
    # what could be read is kept: the fine entry, and the one with a bad in_domain (as in-domain)
    kept = collection.scores[collection.scores.cell == "scores_entries_bad"]
    assert sorted(kept.task) == ["BadDomain", "Fine"] and kept.set_index("task")["in_domain"].to_dict() == {
        "BadDomain": True, "Fine": False}
    # the two good cells and the readable ones still count
    assert {"eos_last", "mean"} <= set(collection.scores.pooling)


def test_python_m_analysis_finishes_and_lists_them(crafted, capsys):
    assert main([str(crafted)]) == 0
    out = capsys.readouterr().out
    assert "malformed" in out and "unreadable" in out
    report = (crafted / "analysis" / "report.md").read_text()
    for name in list(CELL_JSON) + list(SCORES_JSON):
        assert f"{name}/" in report, name
    stats = pd.read_csv(crafted / "analysis" / "stats.csv")
    assert len(stats) and "eos_last/causal (#1)" in set(stats.reference)
    assert "weights_truncated/model/pooling.safetensors | SafetensorError" in report   # listed, not plotted


def test_crafted_files_change_nothing_for_the_good_cells(crafted, tmp_path):
    """The crafted files change nothing about the good cells' numbers."""
    clean = tmp_path / "clean"
    write_cell(clean, "tiny", "eos_last", "causal", 0, GOOD)
    write_cell(clean, "tiny", "mean", "causal", 0, {t: (c, s + 0.01) for t, (c, s) in GOOD.items()})
    a = analyze(crafted, presets=["vs_baseline"], plots=False, out_dir=tmp_path / "a").stats
    b = analyze(clean, presets=["vs_baseline"], plots=False, out_dir=tmp_path / "b").stats
    row = lambda s: s[(s.candidate == "mean/causal") & (s.category == "STS")].iloc[0]   # noqa: E731
    assert (row(a)["p"], row(a)["n"]) == (row(b)["p"], row(b)["n"])
