"""Every value is checked before training, in the plan step and for single runs alike: each error names the
key, the bad value and the fix."""
from __future__ import annotations

import pytest

from tests.helpers import TINY, compose_config, launch

PROBES = {
    "+train.max_stepz=4": ["train.max_stepz", "did you mean train.max_steps"],
    "+lora.rr=8": ["lora.rr", "did you mean lora.r"],
    "+model.foo=1": ["model.foo", "valid keys of model"],
    "train.lr=nan": ["train.lr=nan", "finite"],
    "train.lr=inf": ["train.lr=inf", "finite"],
    "train.temperature=-inf": ["train.temperature=-inf", "finite"],
    "pooling=last_layer_trainable perceiver.num_latents=0": ["perceiver.num_latents=0", ">= 1"],
    "data.loader.limit=-1": ["data.loader.limit=-1", ">= 1"],
    "data.loader.limit=0": ["data.loader.limit=0", ">= 1"],
    "model.max_length=100000000": ["model.max_length=100000000", "maximum"],
    "eval.tasks=[LeeDocumentSTS,NoSuchTask]": ["eval.tasks", "NoSuchTask"],
    "design=eos_causal pooling=mean attention=bidirectional": ["design=eos_causal", "pooling=mean",
                                                               "Drop design="],
    "data=jsonl data.loader.path={tmp}": ["data.loader.path=", "is a directory", ".jsonl file"],
}


@pytest.mark.parametrize("probe", PROBES)
def test_a_bad_value_is_refused_before_training_naming_key_and_fix(tmp_path, probe):
    from embedgrid.errors import ConfigError
    from embedgrid.grid.schema import check

    cfg = compose_config([*TINY, *probe.format(tmp=tmp_path).split()], return_hydra_config=True)
    with pytest.raises(ConfigError) as raised:
        check(cfg)
    assert all(word in str(raised.value) for word in PROBES[probe]), str(raised.value)


def test_a_design_preset_alone_and_its_own_pooling_pass():
    from embedgrid.grid.schema import check

    check(compose_config([*TINY, "design=eos_causal"], return_hydra_config=True))
    check(compose_config([*TINY, "design=eos_causal", "pooling=eos_last"], return_hydra_config=True))


def test_a_local_checkpoints_own_maximum_length_is_enforced(tmp_path):
    import json

    from embedgrid.errors import ConfigError
    from embedgrid.grid.schema import check

    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 512}))
    with pytest.raises(ConfigError, match=r"model.max_length=1024 exceeds the model's maximum 512 .*config.json"):
        check(compose_config([*TINY, f"model.checkpoint={tmp_path}", "model.max_length=1024"]))


def test_the_loaded_models_maximum_length_is_enforced_before_training():
    from embedgrid.errors import ConfigError
    from embedgrid.model.encoder import build_encoder
    from embedgrid.model.spec import EncoderSpec, LoraSpec

    spec = EncoderSpec(checkpoint={"_target_": "embedgrid.assets.tiny_checkpoint"},
                       pooling={"_target_": "embedgrid.model.pooling.MeanPooling"}, max_length=10 ** 6,
                       lora=LoraSpec(enabled=False))
    with pytest.raises(ConfigError, match="max_position_embeddings"):
        build_encoder(spec)


def test_a_conflict_names_the_key_not_the_redacted_values(tmp_path):
    from embedgrid.errors import SweepConflict
    from embedgrid.grid.sweeper import PlannedCell, refuse_shared_dirs

    cells = [PlannedCell(["model=tiny", f"+hf_token={t}"], str(tmp_path / "c"), "new")
             for t in ("hf_AAAAAAAAAAAA", "hf_BBBBBBBBBBBB")]
    with pytest.raises(SweepConflict) as raised:
        refuse_shared_dirs(cells)
    message = str(raised.value)
    assert "differing only in hf_token" in message and "AAAA" not in message and "BBBB" not in message


@pytest.mark.slow
@pytest.mark.parametrize("override,words", [("+train.max_stepz=4", "train.max_stepz"),
                                            ("eval.tasks=[NoSuchTask]", "NoSuchTask")])
@pytest.mark.parametrize("multirun", [False, True], ids=["single", "sweep"])
def test_a_bad_value_stops_a_launch_before_any_training(tmp_path, launch_env, override, words, multirun):
    where = f"hydra.sweep.dir={tmp_path}/sweep" if multirun else f"hydra.run.dir={tmp_path}/cell"
    args = [*(["-m", "pooling=mean,eos_last"] if multirun else []), *TINY, override, where]
    proc = launch(args, launch_env, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and words in out, out[-3000:]
    assert "training on" not in out and not list(tmp_path.rglob("cell.json"))
