"""The cell directory is data, never code, and never somebody else's: crafted and damaged directories."""
from __future__ import annotations

import json

import pytest

from tests.helpers import launch

TINY = ["model=tiny", "train.max_steps=0", "threads=1", "logger=none", "eval=offline_small",
        "eval.tasks=[LeeDocumentSTS]"]


def _spec(checkpoint, **extra) -> dict:
    """A saved spec without LoRA, so nothing but the spec's own checks stands between it and a build."""
    from embedgrid.model.spec import EncoderSpec, LoraSpec

    return EncoderSpec(checkpoint=checkpoint, pooling={"_target_": "embedgrid.model.pooling.MeanPooling"},
                       lora=LoraSpec(enabled=False), **extra).to_dict()


def _remote_code_checkpoint(tmp_path):
    """A checkpoint whose auto_map code creates a marker file when imported."""
    code, marker = tmp_path / "code", tmp_path / "EXECUTED"
    code.mkdir()
    (code / "config.json").write_text(json.dumps({"model_type": "evil", "auto_map": {
        "AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel", "AutoTokenizer": ["evil.Tok", None]}}))
    (code / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                  "from transformers import PretrainedConfig\n"
                                  "class EvilConfig(PretrainedConfig):\n    model_type = 'evil'\n")
    return code, marker


@pytest.mark.parametrize("case", ["remote_code", "local_path", "target", "pooling_target"])
def test_a_crafted_encoder_json_runs_no_code_and_reads_no_path(tmp_path, case):
    from embedgrid.model.encoder import load_encoder
    from embedgrid.errors import UntrustedEncoder

    code, marker = _remote_code_checkpoint(tmp_path)
    spec = {
        "remote_code": _spec(str(code), trust_remote_code=True),
        "local_path": _spec(str(code)),
        "target": _spec({"_target_": "builtins.exec", "source": f"open({str(marker)!r}, 'w')"}),
        "pooling_target": {**_spec({"_target_": "embedgrid.assets.tiny_checkpoint"}),
                           "pooling": {"_target_": "builtins.exec", "source": "1"}},
    }[case]
    saved = tmp_path / "model"
    saved.mkdir()
    (saved / "encoder.json").write_text(json.dumps(spec))
    with pytest.raises(UntrustedEncoder):
        load_encoder(saved)
    assert not marker.exists(), "code from the saved directory ran"


def test_remote_code_and_local_paths_load_only_with_the_callers_opt_in(tmp_path):
    from embedgrid.model.encoder import trusted_spec

    code, _ = _remote_code_checkpoint(tmp_path)
    (tmp_path / "encoder.json").write_text(json.dumps(_spec(str(code), trust_remote_code=True)))
    spec = trusted_spec(tmp_path, trust_remote_code=True, allow_checkpoint_from_disk=True)
    assert spec.trust_remote_code and spec.checkpoint == str(code)
    (tmp_path / "encoder.json").write_text(json.dumps(_spec("Qwen/Qwen2-0.5B")))
    assert trusted_spec(tmp_path).checkpoint == "Qwen/Qwen2-0.5B"  # a hub id needs no opt-in


def _mean_causal_model(compose, directory):
    from embedgrid.grid.celldir import CellDir
    from embedgrid.grid.plan import resolve_plan
    from embedgrid.model.encoder import build_encoder

    cfg = compose([*TINY, "pooling=mean", "attention=causal"])
    plan = resolve_plan(cfg)
    build_encoder(plan.encoder).save(CellDir(directory).model_dir)
    CellDir(directory).write_model_identity(plan)


def test_a_foreign_model_dir_is_refused_in_process(compose, tmp_path):
    from embedgrid.grid.cell import run
    from embedgrid.errors import CellConflict

    _mean_causal_model(compose, tmp_path / "cell")
    with pytest.raises(CellConflict, match="model of tiny-mean-causal"):
        run(compose([*TINY, "pooling=eos_last", "attention=bidirectional"]), tmp_path / "cell")
    assert not (tmp_path / "cell" / "cell.json").exists()


@pytest.mark.slow
def test_a_foreign_model_dir_is_refused_before_anything_is_written(compose, tmp_path, launch_env):
    _mean_causal_model(compose, tmp_path / "cell")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    proc = launch([*TINY, "pooling=eos_last", "attention=bidirectional", f"hydra.run.dir={tmp_path / 'cell'}"],
                  launch_env, check=False)
    assert proc.returncode != 0 and "CellConflict" in proc.stderr and "tiny-mean-causal" in proc.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before, "files were written"


@pytest.mark.slow
def test_another_configs_cell_keeps_its_hydra_config(tmp_path, launch_env):
    cell = tmp_path / "cell"
    (cell / ".hydra").mkdir(parents=True)
    (cell / ".hydra" / "config.yaml").write_text("theirs: true\n")
    (cell / "cell.json").write_text(json.dumps({"config_hash": "0123456789", "status": "done"}))
    proc = launch([*TINY, f"hydra.run.dir={cell}"], launch_env, check=False)
    assert proc.returncode != 0 and "CellConflict" in proc.stderr
    assert (cell / ".hydra" / "config.yaml").read_text() == "theirs: true\n"


@pytest.mark.slow
def test_a_directory_that_is_not_a_cell_is_refused_untouched(tmp_path, launch_env):
    other = tmp_path / "thesis"
    other.mkdir()
    (other / "chapter1.tex").write_text("precious")
    proc = launch([*TINY, f"hydra.run.dir={other}"], launch_env, check=False)
    assert proc.returncode != 0 and "not a cell directory" in proc.stderr and "chapter1.tex" in proc.stderr
    assert sorted(p.name for p in other.iterdir()) == ["chapter1.tex"]


def test_what_counts_as_a_cell_directory(tmp_path):
    from embedgrid.grid.celldir import CellDir
    from embedgrid.errors import CellConflict

    fresh = tmp_path / "fresh"
    (fresh / ".hydra").mkdir(parents=True)
    (fresh / "launch.log").write_text("")
    CellDir(fresh).check_is_cell_dir()  # what Hydra writes before the first record
    CellDir(tmp_path / "absent").check_is_cell_dir()
    (fresh / "notes.txt").write_text("")
    with pytest.raises(CellConflict, match="notes.txt"):
        CellDir(fresh).check_is_cell_dir()
    (fresh / "cell.json").write_text("{}")
    CellDir(fresh).check_is_cell_dir()  # a cell directory may hold anything once it has a record


def test_a_truncated_cell_json_names_its_path(tmp_path):
    from embedgrid.grid.celldir import CellDir
    from embedgrid.errors import CorruptCellRecord

    (tmp_path / "cell.json").write_text('{"status": "do')
    with pytest.raises(CorruptCellRecord, match=str(tmp_path / "cell.json")):
        CellDir(tmp_path).state()
    (tmp_path / "cell.json").write_text("[1, 2]")
    with pytest.raises(CorruptCellRecord, match="not a cell record"):
        CellDir(tmp_path).state()


@pytest.mark.slow
def test_a_truncated_cell_json_marks_its_cell_not_the_sweep(compose, tmp_path, launch_env):
    from embedgrid.grid.cellid import cell_name

    sweep = tmp_path / "sweep"
    broken = sweep / cell_name(compose([*TINY, "pooling=mean"]))
    broken.mkdir(parents=True)
    (broken / "cell.json").write_text('{"status": "do')
    args = ["-m", *TINY, "pooling=mean,eos_last", f"hydra.sweep.dir={sweep}", "analyze=false"]
    dry = launch([*args, "dry_run=true"], launch_env)
    assert "corrupt" in dry.stdout and str(broken / "cell.json") in dry.stdout and "1 new" in dry.stdout
    proc = launch(args, launch_env, check=False)
    assert proc.returncode != 0 and str(broken / "cell.json") in proc.stdout + proc.stderr
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["counts"]["done"] == 1 and summary["counts"]["failed"] == 1
    assert (broken / "cell.json").read_text() == '{"status": "do', "the corrupt record was overwritten"
