"""eval.truncate_dim: an evaluation setting, so a sweep over it trains each design once and evaluates it per dim."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from tests.helpers import TINY, launch


def test_the_setting_enters_the_eval_hash_only_when_set(compose):
    from embedgrid.evaluate.config import EvalConfig
    from embedgrid.evaluate.run import SCORE_SETTINGS, settings_hash
    from embedgrid.grid.cellid import cell_name, config_hash

    plain = EvalConfig(tasks=["LeeDocumentSTS"])
    settings = plain.to_dict()
    before = {**{k: settings[k] for k in SCORE_SETTINGS}, "prompt": {}}  # the hash as it was before the setting
    assert settings_hash(plain) == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:10]
    hashes = {settings_hash(EvalConfig(tasks=["LeeDocumentSTS"], truncate_dim=d)) for d in (None, 32, 64)}
    assert len(hashes) == 3

    full, cut = compose(TINY), compose([*TINY, "eval.truncate_dim=32"])
    assert config_hash(full) == config_hash(cut)  # the same trained model
    assert cell_name(cut) == cell_name(full) + "-dim32"  # its own directory beside the full evaluation


def test_vectors_are_the_renormalised_prefix():
    from embedgrid.evaluate.model import MtebEncoder
    from embedgrid.errors import ConfigError
    from tests.helpers.train import tiny_encoder

    encoder = tiny_encoder()
    texts = ["a dog barks at the moon", "bread in the oven"]
    full = encoder.encode(texts)
    model = MtebEncoder(encoder, name="t/t", revision="r", truncate_dim=16, show_progress_bar=False)
    assert model.mteb_model_meta.embed_dim == 16
    meta = type("Meta", (), {"name": "T", "type": "STS"})()  # what encode reads of mteb's TaskMetadata
    got = model.encode([{"text": texts}], task_metadata=meta, hf_split="test", hf_subset="default")
    expected = full[:, :16] / np.linalg.norm(full[:, :16], axis=1, keepdims=True)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    with pytest.raises(ConfigError, match=r"eval.truncate_dim=65 is outside 1..64"):
        MtebEncoder(encoder, name="t/t", revision="r", truncate_dim=65)


def test_a_dimension_the_encoder_lacks_fails_before_training(compose, tmp_path):
    from embedgrid.errors import ConfigError
    from embedgrid.grid.cell import run

    with pytest.raises(ConfigError, match=r"eval.truncate_dim=65 is outside 1..64"):
        run(compose([*TINY, "eval.truncate_dim=65"]), tmp_path / "cell")
    assert not (tmp_path / "cell" / "checkpoints").exists()


@pytest.mark.slow
def test_a_sweep_over_truncate_dim_trains_one_model_per_design(tmp_path, launch_env, compose):
    """``eval.truncate_dim=32,64,null``: the first cell launched trains; the other dimension and the full
    evaluation adopt its model."""
    from analysis.collect import collect
    from embedgrid.grid.celldir import CellDir
    from embedgrid.grid.plan import resolve_plan

    sweep = tmp_path / "sweep"
    args = ["-m", *TINY, "eval.truncate_dim=32,64,null", f"hydra.sweep.dir={sweep}", "analyze=false"]
    launch(args, launch_env)
    cells = sorted(p for p in sweep.iterdir() if (p / "cell.json").exists())  # <name>, <name>-dim32, <name>-dim64
    assert [p.name for p in cells] == [cells[0].name, cells[0].name + "-dim32", cells[0].name + "-dim64"]
    records = [json.loads((p / "cell.json").read_text()) for p in cells]
    assert {r["status"] for r in records} == {"done"} and len({r["config_hash"] for r in records}) == 1
    trained = [p for p in cells if (p / "checkpoints").exists()]
    assert trained == [cells[1]], "one training for the design (the first launched, dim 32), not one per dimension"
    assert [r["train"].get("model_from") for r in records] == [cells[1].name, None, cells[1].name]
    assert "adopted the trained model of" in (cells[2] / "launch.log").read_text()
    settings = {json.loads((p / "scores.json").read_text())["LeeDocumentSTS"]["eval_settings"] for p in cells}
    assert len(settings) == 3
    for cell, dim in zip(cells, ("null", "32", "64")):  # what a relaunch's plan sees: all done, nothing to run
        assert CellDir(cell).state(resolve_plan(compose([*TINY, f"eval.truncate_dim={dim}"]))) == "done"

    frame = collect(sweep, by=("eval.truncate_dim",)).scores  # the analysis compares dims like any factor
    assert sorted(str(d.extra) for d in set(frame["design"])) == ["(('eval.truncate_dim', '32'),)",
                                                                 "(('eval.truncate_dim', '64'),)",
                                                                 "(('eval.truncate_dim', 'None'),)"]
