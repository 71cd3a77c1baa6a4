"""The pooling rule: cells are seeds of one design only if they differ in nothing but the seed and runtime keys."""
from __future__ import annotations

import json

import pytest

from analysis import analyze, collect
from analysis.__main__ import main
from analysis.errors import MixedDesigns
from analysis.mixing import RUNTIME_KEYS, covered
from tests.fixtures.analysis_sweep import write_cell

TASKS = {f"STS{i}": ("STS", 0.5 + i / 100) for i in range(6)}
LIBS = {"torch": "2.5.1", "transformers": "4.46.0", "peft": "0.13.0", "mteb": "1.20.0",
        "sentence-transformers": "3.2.0"}


def provenance(commit="abc123", device="cpu", **libraries):
    return {"code": {"version": "0.1.0", "git_commit": commit, "git_dirty": False},
            "libraries": {**LIBS, **libraries}, "device": {"type": device, "name": device, "count": 1},
            "inputs": {"data": "sha256:1111"}, "model_revision": "main@0000", "identity_version": 2}


def sweep_of(root, cells):
    """cells: [(pooling, seed, extra_config, provenance or None, name)]; six STS tasks each."""
    for pooling, seed, extra, prov, name in cells:
        write_cell(root, "tiny", pooling, "causal", seed, {t: (c, s + seed / 1000) for t, (c, s) in TASKS.items()},
                   extra_config=extra, provenance=prov, name=name)
    return root


def steps(n, **more):
    return {"train": {"max_steps": n, "checkpoint_every": 2, **more}}


@pytest.fixture
def mixed(tmp_path):
    """eos_last: three 8-step seeds and a 4-step cell (seed 0) that also differs in lr, eval.max_samples and in
    runtime-only keys (threads, logger, checkpoint_every, eval.batch_size); mean: three clean seeds."""
    cells = [("eos_last", s, {**steps(8), "eval": {"batch_size": 32, "max_samples": 24}}, None, None)
             for s in (0, 1, 2)]
    cells.append(("eos_last", 0, {"train": {"max_steps": 4, "checkpoint_every": 1, "lr": 0.1}, "threads": 4,
                                  "eval": {"batch_size": 8, "max_samples": 50}}, None, "short-seed0"))
    cells += [("mean", s, {**steps(8), "eval": {"batch_size": 32, "max_samples": 24}}, None, None)
              for s in (0, 1, 2)]
    return sweep_of(tmp_path / "sweep", cells)


def test_mixed_configs_are_refused_naming_every_key_identity_first(mixed, tmp_path, capsys):
    code = main([str(mixed), "--out", str(tmp_path / "out"), "--no-plots"])
    err = capsys.readouterr().err
    assert code == 3 and not (tmp_path / "out" / "report.md").exists()
    assert "tiny/eos_last/causal" in err and "tiny/mean/causal" not in err
    listed = [line.strip().split(":")[0] for line in err.splitlines() if line.startswith("    ")]
    # every differing key, identity-relevant (train.*) before the rest; runtime-only keys never
    assert listed == ["train.lr", "train.max_steps", "eval.max_samples"]
    assert "4 (short-seed0)" in err and "--by train.lr,train.max_steps,eval.max_samples" in err
    assert "--pool-over" in err and "Traceback" not in err
    with pytest.raises(MixedDesigns):
        analyze(mixed, out_dir=tmp_path / "api", plots=False)


def test_by_splits_and_pool_over_averages_by_name(mixed, tmp_path):
    split = analyze(mixed, out_dir=tmp_path / "split", plots=False,
                    by=("train.max_steps", "train.lr", "eval.max_samples"))
    labels = sorted(d.label() for d in set(split.means["design"]))
    assert len(labels) == 3 and any("train.max_steps=4" in label for label in labels)
    assert not [p for p in split.problems if p.kind in ("pooled over", "duplicate")]

    pooled = analyze(mixed, out_dir=tmp_path / "pooled", plots=False,
                     pool_over=("train.max_steps", "train.lr", "eval.max_samples"))
    named = [p for p in pooled.problems if p.kind == "pooled over"]
    assert [p.detail.split(":")[0].split()[-1] for p in named] == ["train.lr", "train.max_steps", "eval.max_samples"]
    pooled_section = pooled.report.split("**Pooled over** (`--pool-over train.max_steps,train.lr,eval.max_samples`)")[1]
    assert "- tiny/eos_last/causal (#1): train.max_steps: 8 (" in pooled_section and "4 (short-seed0)" in pooled_section
    # a key not pooled over is still refused
    with pytest.raises(MixedDesigns, match="train.lr"):
        analyze(mixed, out_dir=tmp_path / "partial", plots=False, pool_over=("train.max_steps", "eval"))


def test_runtime_only_differences_pool_silently(tmp_path):
    cells = [("mean", 0, {**steps(8), "threads": 1, "eval": {"batch_size": 8, "tasks": ["A"], "name": "small"}},
              None, None),
             ("mean", 1, {"train": {"max_steps": 8, "checkpoint_every": 4, "log_every": 5, "progress_bar": False,
                                    "length_sorted": False}, "threads": 8, "device": "cuda", "verbose": True,
                          "eval": {"batch_size": 64, "tasks": ["A", "B"], "name": "offline", "compile": True}},
              None, None)]
    root = sweep_of(tmp_path / "sweep", cells)
    write_cell(root, "tiny", "mean", "causal", 2, TASKS, extra_config=steps(8), logger={"_target_": "wandb"})
    collection = collect(root)
    assert collection.mixes == [] and not collection.problems
    assert covered("train.checkpoint_every", RUNTIME_KEYS) and not covered("train.max_steps", RUNTIME_KEYS)


def test_library_version_is_refused_and_can_be_pooled_over(tmp_path, capsys):
    cells = [("mean", s, steps(8), provenance(), f"mean-{s}") for s in (0, 1)]
    cells.append(("mean", 2, steps(8), provenance(transformers="4.47.1"), "mean-2"))
    root = sweep_of(tmp_path / "sweep", cells)
    assert main([str(root), "--out", str(tmp_path / "a"), "--no-plots"]) == 3
    err = capsys.readouterr().err
    assert "provenance.libraries.transformers" in err and '"4.47.1" (mean-2)' in err
    assert "provenance.libraries.torch" not in err
    assert main([str(root), "--out", str(tmp_path / "b"), "--no-plots",
                 "--pool-over", "provenance.libraries.transformers"]) == 0
    report = (tmp_path / "b" / "report.md").read_text()
    assert "provenance.libraries.transformers" in report
    # split instead: one design per transformers version
    result = analyze(root, out_dir=tmp_path / "c", plots=False, by=("provenance.libraries.transformers",))
    assert len(set(result.means["design"])) == 2


def test_older_cells_compare_their_recorded_versions(tmp_path):
    """Cells without ``provenance`` still carry ``versions``; those are compared; nothing else is required."""
    root = tmp_path / "sweep"
    old = write_cell(root, "tiny", "mean", "causal", 0, TASKS, extra_config=steps(8))
    new = write_cell(root, "tiny", "mean", "causal", 1, TASKS, extra_config=steps(8), provenance=provenance())
    assert collect(root).mixes == []        # the old cell records nothing to compare
    record = json.loads((old / "cell.json").read_text())
    record["versions"] = {"python": "3.11", "torch": "2.4.0", "mteb": LIBS["mteb"]}
    (old / "cell.json").write_text(json.dumps(record))
    [mix] = collect(root).mixes
    assert [d.key for d in mix.refused] == ["provenance.libraries.torch"] and new.name in str(mix.refused[0].values)


def test_code_and_device_differences_are_flagged_not_refused(tmp_path):
    cells = [("mean", 0, steps(8), provenance(commit="aaa"), "m0"),
             ("mean", 1, steps(8), provenance(commit="bbb", device="cuda"), "m1")]
    root = sweep_of(tmp_path / "sweep", cells)
    result = analyze(root, out_dir=tmp_path / "out", plots=False)
    flagged = [p for p in result.problems if p.kind == "provenance differs"]
    assert {p.detail.split(":")[0] for p in flagged} == {"provenance.code.git_commit", "provenance.device.name",
                                                         "provenance.device.type"}


def test_identical_configs_of_one_seed_are_a_duplicate_not_a_mix(tmp_path):
    root = tmp_path / "sweep"
    for name in ("a", "b"):
        write_cell(root, "tiny", "mean", "causal", 0, TASKS, extra_config=steps(8), name=name)
    collection = collect(root)
    assert collection.mixes == [] and [p.kind for p in collection.problems] == ["duplicate"]


def test_report_provenance_section_names_values_designs_and_differences(tmp_path):
    cells = [("mean", 0, steps(8), provenance(commit="aaa"), "m0"),
             ("mean", 1, steps(8), provenance(commit="bbb"), "m1"),
             ("eos_last", 0, steps(8), provenance(commit="aaa"), "e0")]
    root = sweep_of(tmp_path / "sweep", cells)
    write_cell(root, "tiny", "eos_last", "causal", 1, TASKS, extra_config=steps(8), name="old")   # no provenance
    result = analyze(root, out_dir=tmp_path / "out", plots=False)
    section = result.report.split("## Provenance")[1].split("\n## ")[0]
    assert "3 of 4 cell(s) with scores record a provenance" in section
    rows = [line for line in section.splitlines() if line.startswith("| ") and "entry" not in line]
    assert "| code git_commit | `aaa` | eos_last/causal (#1), mean/causal | 2 |" in rows
    assert "| code git_commit | `bbb` | mean/causal | 1 |" in rows
    assert "| library transformers | `4.46.0` | all designs | 3 |" in rows
    assert "| input data | `sha256:1111` | all designs | 3 |" in rows
    assert "| model revision | `main@0000` | all designs | 3 |" in rows
    assert "| device type | `cpu` | all designs | 3 |" in rows
    flagged = section.split("**Within one design**")[1]
    assert "- tiny/mean/causal: provenance.code.git_commit: \"aaa\" (m0); \"bbb\" (m1)" in flagged
    assert "eos_last" not in flagged          # the old cell records no commit: nothing to compare


def test_a_cell_without_a_recorded_config_is_not_taken_for_a_seed(tmp_path):
    root = sweep_of(tmp_path / "sweep", [("mean", s, steps(8), None, f"m{s}") for s in (0, 1)])
    record = json.loads((root / "m1" / "cell.json").read_text())
    del record["config"]
    (root / "m1" / "cell.json").write_text(json.dumps(record))
    with pytest.raises(MixedDesigns, match=r"differ in 1 key\(s\):\n    config: not recorded \(m1\); recorded \(m0\)\n"):
        analyze(root, out_dir=tmp_path / "out", plots=False)
