"""No config runs code: checkpoint targets are allowlisted, and files read back from disk are never interpolated."""
from __future__ import annotations

import json

import pytest

from tests.helpers import TINY


def test_a_checkpoint_target_outside_the_allowlist_is_refused_before_it_runs(compose, tmp_path):
    from embedgrid.errors import ConfigError
    from embedgrid.grid.schema import check
    from embedgrid.model.backbone import resolve_checkpoint

    source, copy = tmp_path / "source", tmp_path / "copied"
    source.write_text("x")
    from omegaconf import OmegaConf, open_dict

    cfg = compose(TINY)  # as a model config file on hydra.searchpath would set it
    with open_dict(cfg):
        OmegaConf.update(cfg, "model.checkpoint", {"_target_": "shutil.copy", "src": str(source), "dst": str(copy)},
                         merge=False)
    with pytest.raises(ConfigError, match="model.checkpoint._target_='shutil.copy' is not allowed"):
        check(cfg)
    with pytest.raises(ConfigError):
        resolve_checkpoint({"_target_": "shutil.copy", "src": str(source), "dst": str(copy)})
    with pytest.raises(ConfigError, match="_recursive_"):
        resolve_checkpoint({"_target_": "embedgrid.assets.tiny_checkpoint", "_recursive_": True})
    assert not copy.exists(), "the config ran shutil.copy"


@pytest.mark.parametrize("where", ["checkpoint", "pooling", "name"])
def test_an_interpolation_in_encoder_json_is_refused_and_no_env_value_appears(tmp_path, monkeypatch, where):
    from embedgrid.errors import UntrustedEncoder
    from embedgrid.model.encoder import load_encoder
    from embedgrid.model.spec import EncoderSpec, LoraSpec

    monkeypatch.setenv("HF_TOKEN", "hf_sekritSEKRIT123")
    spec = EncoderSpec(checkpoint={"_target_": "embedgrid.assets.tiny_checkpoint"},
                       pooling={"_target_": "embedgrid.model.pooling.MeanPooling"},
                       lora=LoraSpec(enabled=False)).to_dict()
    if where == "checkpoint":
        spec["checkpoint"]["arch"] = "${oc.env:HF_TOKEN}"
    elif where == "pooling":
        spec["pooling"] = {"_target_": "embedgrid.model.pooling.LatentAttentionPooling", "num_latents": 8,
                           "num_heads": "${oc.env:HF_TOKEN}"}
    else:
        spec["name"] = "x-${oc.env:HF_TOKEN}"
    (tmp_path / "encoder.json").write_text(json.dumps(spec))
    with pytest.raises(UntrustedEncoder, match="interpolation") as raised:
        load_encoder(tmp_path)
    assert "sekrit" not in str(raised.value).lower()
