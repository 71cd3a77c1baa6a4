"""User errors in a cell's inputs are found before any job: once per cause, with the key, the value and the fix,
and without a traceback; a sweep whose cells fail ends with a table and the resume command."""
from __future__ import annotations

import json

import pytest

from tests.helpers import TINY, compose_config, launch

ROW = {"query": "q", "positive": "p", "negatives": ["n"]}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_row_validation_names_unknown_fields_first():
    from embedgrid.data.rows import Row

    with pytest.raises(ValueError, match=r"f.jsonl:3: unknown fields \['qurey'\]"):
        Row.from_mapping({"qurey": "a", "positive": "b"}, "f.jsonl:3")


def test_a_missing_mandatory_value_is_named_by_its_real_key(compose):
    from embedgrid.errors import ConfigError
    from embedgrid.grid.schema import check

    with pytest.raises(ConfigError) as error:
        check(compose(["data=jsonl"]))
    assert str(error.value).startswith("data.loader.path must be set") and "data.data" not in str(error.value)


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from embedgrid.data import fingerprint

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(fingerprint, "_hub_memo", {})


def test_an_uncached_hub_model_offline_is_named_with_both_fixes(empty_hub_cache, tmp_path):
    from embedgrid.grid.readiness import blockers

    partial = tmp_path / "hub" / "models--Qwen--Qwen2-0.5B"  # a download that never finished: no config.json
    (partial / "snapshots" / ("a" * 40)).mkdir(parents=True)
    (partial / "refs").mkdir()
    (partial / "refs" / "main").write_text("a" * 40)

    (blocker,) = blockers(compose_config(["model=qwen2_0_5b"]))
    text = blocker.message()
    assert blocker.key == "model.checkpoint" and blocker.value == "Qwen/Qwen2-0.5B"
    assert "HF_HUB_OFFLINE=1" in text and "hf download Qwen/Qwen2-0.5B" in text and "model.checkpoint=/" in text


def test_an_uncached_hub_dataset_offline_is_named(empty_hub_cache):
    from embedgrid.grid.readiness import blockers

    (blocker,) = blockers(compose_config(["model=tiny", "data=ir_data"]))
    assert blocker.key == "data.loader.path" and "--repo-type dataset yixuantt/ir_data" in blocker.fix


@pytest.mark.parametrize("rows, expected", [
    ([ROW, {"query": "q", "positve": "p"}], ":2: unknown fields ['positve']"),
    ([ROW, {"query": "q", "positive": "p"}], ":2: 0 hard negatives, but train.num_negatives=1"),
    ("not json", ":1: not a JSON object"),
])
def test_first_rows_that_do_not_parse_are_named(tmp_path, rows, expected):
    from embedgrid.grid.readiness import blockers

    path = tmp_path / "train.jsonl"
    path.write_text(rows + "\n") if isinstance(rows, str) else write_jsonl(path, rows)
    (blocker,) = blockers(compose_config(["model=tiny", "data=jsonl", f"data.loader.path={path}",
                                          "train.num_negatives=1"]))
    assert blocker.key == "data.loader.path" and expected in blocker.why


def test_a_parquet_without_the_mapped_columns_and_a_missing_mixture_source_are_named(tmp_path):
    import pandas as pd

    from embedgrid.grid.readiness import blockers

    parquet = tmp_path / "train.parquet"
    pd.DataFrame([{"anchor": "q", "pos": "p", "neg": "n"}]).to_parquet(parquet)
    (blocker,) = blockers(compose_config(["model=tiny", "data=hf", f"data.loader.path={parquet}"]))
    assert "has no columns ['query', 'positive', 'negatives']" in blocker.why
    assert not blockers(compose_config(["model=tiny", "data=hf", f"data.loader.path={parquet}",
                                        "data.loader.columns={query: anchor, positive: pos, negatives: [neg]}",
                                        "train.num_negatives=1"]))
    (missing,) = blockers(compose_config(["model=tiny", "data=mixture",
                                          f"+data.loader.sources.mine={{kind: jsonl, path: {tmp_path}/no.jsonl}}"]))
    assert missing.key == "data.loader.sources.mine.path" and missing.why == "does not exist"


@pytest.mark.parametrize("overrides, dim, source", [
    (["eval.truncate_dim=65"], 64, "model.checkpoint.hidden_size"),
    (["model.checkpoint.hidden_size=32", "eval.truncate_dim=33"], 32, "model.checkpoint.hidden_size"),
    (["pooling=last_layer_trainable", "perceiver.output_dim=16", "eval.truncate_dim=17"], 16,
     "pooling.head.output_dim"),
])
def test_a_truncate_dim_beyond_the_planned_dimension_is_refused_before_any_job(overrides, dim, source):
    from embedgrid.grid.readiness import blockers

    (blocker,) = blockers(compose_config([*TINY, *overrides]))
    assert (blocker.key, blocker.value) == ("eval.truncate_dim", overrides[-1].split("=")[1])
    assert f"dimension {dim} ({source})" in blocker.why and f"between 1 and {dim}" in blocker.fix
    at_most = [o for o in overrides if not o.startswith("eval.")] + [f"eval.truncate_dim={dim}"]
    assert not blockers(compose_config([*TINY, *at_most]))


def test_a_hub_models_dimension_comes_from_its_cached_config_else_from_the_loaded_model(empty_hub_cache, tmp_path):
    from embedgrid.grid.readiness import blockers, planned_dim

    args = ["model=qwen2_0_5b", "eval.truncate_dim=1024"]
    assert planned_dim(compose_config(args)) is None        # not downloaded: the cell checks after loading
    repo = tmp_path / "hub" / "models--Qwen--Qwen2-0.5B"
    (repo / "snapshots" / ("a" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("a" * 40) / "config.json").write_text(json.dumps({"hidden_size": 896}))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    assert planned_dim(compose_config(args)) == (896, "hidden_size of Qwen/Qwen2-0.5B's config.json")
    (blocker,) = blockers(compose_config(args))
    assert blocker.key == "eval.truncate_dim" and "between 1 and 896" in blocker.fix
    assert not blockers(compose_config(["model=qwen2_0_5b", "eval.truncate_dim=896"]))


def test_offline_qwen_single_run_prints_a_short_message_and_no_traceback(tmp_path, launch_env):
    proc = launch(["model=qwen2_0_5b", f"hydra.run.dir={tmp_path / 'cell'}"], launch_env, check=False)
    out = (proc.stdout + proc.stderr).strip()
    assert proc.returncode != 0 and len(out.splitlines()) <= 15, out
    assert "Qwen/Qwen2-0.5B" in out and "hf download" in out and "model.checkpoint" in out
    assert "Traceback" not in out and not (tmp_path / "cell").exists()
    dry = launch(["model=qwen2_0_5b", "dry_run=true", f"hydra.run.dir={tmp_path / 'cell'}"], launch_env)
    assert "[blocked]" in dry.stdout and "model.checkpoint=Qwen/Qwen2-0.5B:" in dry.stdout


def test_dry_run_shows_blocked_cells_and_each_cause_once(tmp_path, launch_env):
    missing = tmp_path / "missing.jsonl"
    args = ["-m", "model=qwen2_0_5b,tiny", "seed=0,1", "data=jsonl", f"data.loader.path={missing}",
            f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    proc = launch([*args, "dry_run=true"], launch_env)
    assert proc.stdout.count("[blocked]") == 4
    assert proc.stdout.count("model.checkpoint=Qwen/Qwen2-0.5B:") == 1
    assert proc.stdout.count(f"data.loader.path={missing}: does not exist") == 1

    real = launch(args, launch_env, check=False)  # the same sweep for real: stops before any job
    out = real.stdout + real.stderr
    assert real.returncode != 0 and "Traceback" not in out and "Launching" not in out
    assert out.count(f"data.loader.path={missing}: does not exist") == 1
    assert not list((tmp_path / "sweep").glob("*/cell.json"))


@pytest.mark.slow
def test_a_sweep_with_a_failed_cell_ends_with_a_table_and_the_resume_command(tmp_path, launch_env):
    rows = [ROW] * 6 + [{"query": "q", "positive": "p"}]  # row 7 lacks negatives: beyond the plan's first rows
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    proc = launch(["-m", *TINY, "data=jsonl", f"data.loader.path={data}", "train.num_negatives=1",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}"], launch_env, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out, out[-3000:]
    assert "1 of 1 cells failed" in proc.stdout and "resume (finished cells are skipped): python" in proc.stdout
    (cell,) = (tmp_path / "sweep").glob("tiny-*")
    assert f"{cell.name}  ValueError: {data}:7: 0 hard negatives" in proc.stdout
    assert "Traceback" in (cell / "launch.log").read_text()
