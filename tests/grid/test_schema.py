"""Every config group: a bad value is refused before any job (compose time or schema.check), naming the key,
the bad value and the valid choices; end to end, a launch with a bad value trains nothing and writes no cell."""
from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from tests.helpers import ROOT, launch

TINY = ["model=tiny", "logger=none", "eval=offline_small", "threads=1", "train.progress_bar=false"]

# group -> (override, words the error must contain: key, bad value, a valid choice)
BAD = {
    "top": ("device=gpu", ["device", "gpu", "cuda:N"]),
    "model": ("model.dtype=float8", ["model.dtype", "float8", "bfloat16"]),
    "pooling": ("pooling=last_layer_trainable +pooling.head.num_latent=8",
                ["pooling.head.num_latent", "8", "num_latents"]),
    "attention": ("attention.name=sideways", ["attention.name", "sideways", "bidirectional"]),
    "train": ("train.max_steps=-1", ["train.max_steps", "-1", ">= 0"]),
    "lora": ("lora.r=0", ["lora", "r=0", "r >= 1"]),
    "data": ("+data.loader.num_negative=2", ["data.loader.num_negative", "2", "num_negatives"]),
    "eval": ("eval.instruction_scope=docs", ["eval.instruction_scope", "docs", "query, all"]),
    "logger": ("logger=wandb +logger.projekt=x", ["logger.projekt", "x", "project"]),
}


def _check(compose, overrides):
    from embedgrid.grid.schema import check

    check(compose([*TINY, *overrides]))


@pytest.mark.parametrize("group", sorted(BAD))
def test_a_bad_value_of_each_group_is_refused_naming_key_value_and_choices(compose, group):
    from embedgrid.errors import ConfigError

    override, words = BAD[group]
    with pytest.raises(ConfigError) as error:
        _check(compose, override.split())
    for word in words:
        assert word in str(error.value), (word, str(error.value))


def test_the_good_configs_pass_the_checks(compose):
    for overrides in ([], ["pooling=multi_layer_trainable", "attention=bidirectional"], ["model=smollm2_135m"],
                      ["experiment=minilm_reference"], ["data=jsonl", "data.loader.path=x.jsonl"],
                      ["experiment=paper_reference", "design=last_layer_bidirectional"],
                      ["experiment=paper_reference", "design=multi_layer_causal", "model=smollm2_135m"],
                      ["pooling=nv_embed"], ["train=paper"], ["train=paper_gradcache"]):
        _check(compose, overrides)


def test_a_pooling_kwarg_the_class_itself_refuses_fails_on_the_known_backbone_shape(compose):
    from embedgrid.errors import ConfigError

    # tiny: hidden 64 is not divisible by 5 heads -> the class's own check, on meta
    with pytest.raises(ConfigError, match="not divisible by num_heads 5"):
        _check(compose, ["pooling=last_layer_trainable", "perceiver.num_heads=5"])
    with pytest.raises(ConfigError, match="unknown pooling input 'cls'"):
        _check(compose, ["pooling=last_layer_trainable", "pooling.head.input=cls"])
    _check(compose, ["pooling=last_layer_trainable", "perceiver.head_dim=512"])  # math kernel, not an error
    with pytest.raises(ConfigError, match="unknown instruction_join='concat'"):
        _check(compose, ["instruction_join=concat"])
    with pytest.raises(ConfigError, match="instruction_scope"):
        _check(compose, ["eval.instruction_scope={Retrieval: query}"])


def test_pooling_registry_allows_only_embedgrid_heads_and_covers_every_exported_one():
    import embedgrid.model.pooling as package
    from embedgrid.errors import ConfigError
    from embedgrid.model.pooling.base import Pooling
    from embedgrid.model.pooling.build import pooling_class, pooling_registry

    exported = {c for c in vars(package).values() if isinstance(c, type) and issubclass(c, Pooling) and c is not Pooling}
    assert set(pooling_registry().values()) == exported
    with pytest.raises(ConfigError, match="unknown pooling class"):
        pooling_class({"_target_": "os.system"})


def test_a_missing_required_value_is_named(compose):
    from embedgrid.errors import ConfigError

    with pytest.raises(ConfigError, match="data.loader.path"):
        _check(compose, ["data=jsonl"])


@pytest.mark.parametrize("override", ["eval.batch_size=ten", "model.max_length=long", "attention.name=[1]",
                                      "model.trust_remote_code=maybe", "model.checkpont=x"])
def test_typed_groups_fail_at_compose_time(compose, override):
    with pytest.raises((ConfigCompositionException, ValidationError)):
        compose([*TINY, override])


def test_train_max_length_replaces_the_models_and_is_the_same_cell(compose):
    from embedgrid.grid.plan import encoder_spec
    from embedgrid.grid.cellid import cell_name

    default, recipe = compose(TINY), compose([*TINY, "train.max_length=48"])
    assert encoder_spec(default).max_length == 64 and encoder_spec(recipe).max_length == 48
    assert cell_name(recipe) == cell_name(compose([*TINY, "model.max_length=48"])) != cell_name(default)


def test_defaults_are_stated_once(compose):
    """conf/train/default.yaml and conf/config.yaml state no train / lora value: the dataclasses hold them."""
    from omegaconf import OmegaConf

    from embedgrid.model.spec import LoraSpec
    from embedgrid.train.config import TrainConfig

    assert not OmegaConf.load(ROOT / "conf" / "train" / "default.yaml")
    assert "lora" not in OmegaConf.load(ROOT / "conf" / "config.yaml")
    cfg = compose([])
    assert TrainConfig(**OmegaConf.to_container(cfg.train)) == TrainConfig()
    assert LoraSpec(**OmegaConf.to_container(cfg.lora)) == LoraSpec()


@pytest.mark.slow
@pytest.mark.parametrize("multirun", [False, True], ids=["single", "sweep"])
@pytest.mark.parametrize("group", ["pooling", "eval", "attention"])
def test_a_bad_value_stops_the_launch_before_any_model_loads(tmp_path, launch_env, group, multirun):
    override, words = BAD[group]
    where = f"hydra.sweep.dir={tmp_path}/sweep" if multirun else f"hydra.run.dir={tmp_path}/cell"
    proc = launch([*(["-m"] if multirun else []), *TINY, *override.split(), where], launch_env, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and all(w in out for w in words), out[-3000:]
    assert "training on" not in out and "Loading" not in out
    assert not (tmp_path / "cell").exists() and not list(tmp_path.glob("sweep/*/cell.json"))
