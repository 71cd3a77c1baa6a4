"""Typed schema of the whole config (Hydra ConfigStore) and the checks that run before any job.

Two layers, both before a model loads:
  * compose time (Hydra + OmegaConf): every group is a dataclass here, so ``seed=abc``, ``eval.batch_size=ten``
    or a misspelt key in a ``conf/<group>/*.yaml`` file fails with the key and the expected type;
  * ``check(cfg)`` (the sweeper's plan step for every cell, and a single run's start): values whose validity is
    not a type — choices (``attention.name=sideways``, ``eval.instruction_scope=docs``, ``model.dtype``,
    ``device``), ranges (``train.*``, ``eval.*``), pooling kwargs against the pooling class's ``__init__`` (and the
    class's own checks on the backbone's shape when it is known without loading), data loader and logger kwargs
    against their function's signature, and missing values (``???``). Each error names the key, the bad value
    and the valid choices.
Defaults live here (and in TrainConfig / LoraSpec / EvalConfig); the yaml files set what a preset changes.
"""
from __future__ import annotations

import difflib
import inspect
import math
import os
import re
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from embedgrid.model.attention import Attention
from embedgrid.errors import ConfigError
from embedgrid.evaluate.config import EvalConfig
from embedgrid.model.spec import DEFAULT_INSTRUCTION_JOIN, DEFAULT_INSTRUCTION_TEMPLATE, LoraSpec, check_instructions
from embedgrid.train.config import TrainConfig

DTYPES = ("float32", "bfloat16", "float16")
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
# embedgrid's own callables a config may name (data loaders, loggers); pooling heads: embedgrid.model.pooling.build
DATA_PREFIX, LOGGER_TARGETS = "embedgrid.data.", ("embedgrid.logger.NullLogger", "embedgrid.logger.WandbLogger")
LOGGER_RUNTIME_ARGUMENTS = ("run_id", "name", "group", "run_config", "directory")  # given by the cell
# No checkpoint's position embeddings reach this: a longer model.max_length is a typo (the model's own maximum is
# checked too, where its config is known before loading: a local checkpoint's config.json).
MAX_LENGTH_CAP = 1 << 20
# Loaders whose ``path`` is one file (a directory is refused by name); hf_rows also reads dataset directories.
FILE_LOADERS = {"embedgrid.data.jsonl.jsonl_rows": "a .jsonl file", "embedgrid.data.hf.parquet_rows": "a .parquet file"}
FILE_SOURCE_KINDS = {"jsonl": "a .jsonl file", "parquet": "a .parquet file"}  # data=mixture sources
POSITIVE_GEOMETRY = ("num_latents", "num_heads", "head_dim", "ff_mult", "output_dim")  # Perceiver / latent heads


@dataclass
class ModelConfig:
    """``checkpoint``: a path / hub id or a ``_target_`` node of embedgrid.assets; ``lora_target_modules``:
    the model's own LoRA layer names (null: ``lora.target_modules``, the decoder projections)."""

    name: str = MISSING
    checkpoint: Any = MISSING
    revision: Optional[str] = None
    dtype: str = "float32"
    attn_implementation: str = "sdpa"
    trust_remote_code: bool = False
    max_length: int = MISSING
    lora_target_modules: Optional[List[str]] = None
    card: Dict[str, Any] = field(default_factory=dict)  # license, base_model, reference: metadata, not identity


@dataclass
class PoolingConfig:
    name: str = MISSING
    head: Dict[str, Any] = MISSING  # {_target_: embedgrid.model.pooling.<Class>, **that class's keyword arguments}


@dataclass
class PerceiverConfig:
    """Geometry and reference switches of the Perceiver pooler (designs 2-5); values in conf/perceiver/*.yaml."""

    num_latents: int = MISSING
    num_heads: Optional[int] = MISSING
    head_dim: Optional[int] = MISSING
    ff_mult: int = MISSING
    output_dim: Optional[int] = MISSING
    mask_padding: bool = MISSING
    causal_last_layer_input: str = MISSING
    normalize_layers: bool = MISSING
    layer_embedding_std: float = MISSING
    latent_init_std: Optional[float] = MISSING
    attention_scale: Optional[float] = MISSING


@dataclass
class AttentionConfig:
    name: str = MISSING


@dataclass
class DataConfig:
    name: str = MISSING
    loader: Dict[str, Any] = MISSING  # {_target_: embedgrid.data.<module>.<function>, **its arguments}


@dataclass
class GridSchema:
    seed: int = 0
    grid: str = "default"
    threads: Optional[int] = None
    device: str = "auto"
    instruction_in_pooling: bool = True
    append_eos: bool = True
    instruction_template: str = DEFAULT_INSTRUCTION_TEMPLATE
    instruction_join: str = DEFAULT_INSTRUCTION_JOIN
    dry_run: bool = False
    analyze: bool = True
    verbose: bool = False
    eval_shard: Optional[List[str]] = None  # set by the sweeper on an evaluation shard job (eval.shards): its tasks
    model: ModelConfig = field(default_factory=ModelConfig)
    pooling: PoolingConfig = field(default_factory=PoolingConfig)
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    lora: LoraSpec = field(default_factory=LoraSpec)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: Dict[str, Any] = field(default_factory=lambda: {"_target_": "embedgrid.logger.NullLogger"})
    perceiver: PerceiverConfig = field(default_factory=PerceiverConfig)


def register() -> None:
    ConfigStore.instance().store(name="embedgrid_schema", node=GridSchema)


# ---- checks before any job ----------------------------------------------------------------------------------
def check(cfg) -> None:
    """Every value of every group that compose time cannot check; raises ConfigError naming the key."""
    from omegaconf import OmegaConf

    from embedgrid.grid.cellid import check_path_names

    check_path_names(cfg)
    missing = sorted(k if k.startswith(f"{key}.") else f"{key}.{k}"  # missing_keys gives full keys
                     for key in cfg if key != "hydra" and OmegaConf.is_config(cfg[key])
                     for k in OmegaConf.missing_keys(cfg[key]))
    if missing:
        example = "data.loader.path=/path/to/train.jsonl" if "data.loader.path" in missing else f"{missing[0]}=..."
        raise ConfigError(f"{', '.join(missing)} must be set (the config leaves {'them' if len(missing) > 1 else 'it'}"
                          f" as ???), e.g. {example}")
    check_known_keys(cfg)
    check_finite(OmegaConf.to_container(cfg, resolve=True) if "hydra" not in cfg else
                 {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
                  for k in cfg if k != "hydra"})
    check_design(cfg)
    if not DEVICE.match(str(cfg.device)):
        raise ConfigError(f"device={cfg.device!r}; valid: auto, cpu, cuda, cuda:N, mps")
    if cfg.threads is not None and cfg.threads < 1:
        raise ConfigError(f"threads={cfg.threads} must be >= 1 or null (torch's default)")
    if OmegaConf.is_config(cfg.model.checkpoint):
        from embedgrid.model.backbone import check_checkpoint_target

        check_checkpoint_target(OmegaConf.to_container(cfg.model.checkpoint, resolve=True))
    if cfg.model.dtype not in DTYPES:
        raise ConfigError(f"model.dtype={cfg.model.dtype!r}; valid: {', '.join(DTYPES)}")
    if cfg.model.max_length < 2:
        raise ConfigError(f"model.max_length={cfg.model.max_length} must be >= 2")
    check_max_length(cfg)
    train = train_config(cfg)
    if train.max_length is not None and train.max_length < 2:
        raise ConfigError(f"train.max_length={train.max_length} must be >= 2 or null (model.max_length)")
    lora = LoraSpec(**OmegaConf.to_container(cfg.lora, resolve=True))
    if lora.enabled and (lora.r < 1 or lora.alpha <= 0 or not 0 <= lora.dropout < 1):
        raise ConfigError(f"lora r={lora.r}, alpha={lora.alpha}, dropout={lora.dropout}: need r >= 1, alpha > 0, "
                          "0 <= dropout < 1")
    Attention(cfg.attention.name)
    check_instructions(cfg.instruction_template, cfg.instruction_join, cfg.instruction_in_pooling)
    evaluation = eval_config(cfg)
    if evaluation.custom:
        from embedgrid.evaluate.tasks import OFFLINE_TASKS
        from embedgrid.evaluate.tasks.custom import check_custom

        check_custom(evaluation.custom, set(evaluation.tasks) | set(OFFLINE_TASKS))
    from embedgrid.model.pooling.build import check_pooling

    check_pooling(OmegaConf.to_container(cfg.pooling.head, resolve=True), cfg.attention.name, known_shape(cfg))
    check_geometry(OmegaConf.to_container(cfg.perceiver, resolve=True), "perceiver")
    check_geometry(OmegaConf.to_container(cfg.pooling.head, resolve=True), "pooling.head")
    loader = OmegaConf.to_container(cfg.data.loader, resolve=True)
    check_call(loader, "data.loader", allowed=lambda t: t.startswith(DATA_PREFIX))
    check_data_paths(loader)
    check_call(OmegaConf.to_container(cfg.logger, resolve=True), "logger", allowed=lambda t: t in LOGGER_TARGETS,
               given_by_caller=LOGGER_RUNTIME_ARGUMENTS)
    from embedgrid.evaluate.run import check_task_names

    check_task_names(tuple(evaluation.tasks))  # cached: a sweep resolves each task list once


# The typed groups: a key the dataclass does not have (``+train.max_stepz=4``) is refused, not warned about.
TYPED_GROUPS = {"model": ModelConfig, "pooling": PoolingConfig, "attention": AttentionConfig, "train": TrainConfig,
                "lora": LoraSpec, "data": DataConfig, "eval": EvalConfig, "perceiver": PerceiverConfig}


def check_known_keys(cfg) -> None:
    for group, schema in TYPED_GROUPS.items():
        if group not in cfg or not hasattr(cfg[group], "keys"):
            continue
        known = [f.name for f in fields(schema)]
        for key in cfg[group].keys():
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"; did you mean {group}.{close[0]}?" if close else ""
                raise ConfigError(f"unknown key {group}.{key} (given as +{group}.{key}=...){hint} valid keys of "
                                  f"{group}: {', '.join(known)}")


def check_finite(node, key: str = "") -> None:
    """No float anywhere in the config is NaN or infinite (``train.lr=nan`` would train a step, then fail)."""
    if isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"{key}={node} is not a finite number; set a finite value")
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for name, value in items:
        check_finite(value, f"{key}.{name}" if key else str(name))


def check_design(cfg) -> None:
    """``design=<preset>`` sets pooling and attention together: a pooling=/attention= beside it that changes
    them is refused (the cell would run another design than the one named)."""
    from omegaconf import OmegaConf

    from embedgrid.grid.designs import PAPER_DESIGNS

    design = OmegaConf.select(cfg, "hydra.runtime.choices.design", default=None) if "hydra" in cfg else None
    if design in (None, "null"):
        return
    wanted = {name: pair for pair, (_, name) in PAPER_DESIGNS.items()}.get(str(design))
    if wanted is None:
        return
    got = (cfg.pooling.name, cfg.attention.name)
    if got != wanted:
        raise ConfigError(f"design={design} means pooling={wanted[0]} attention={wanted[1]}, but the overrides set "
                          f"pooling={got[0]} attention={got[1]}. Drop design= to run {got[0]}/{got[1]}, or drop "
                          "pooling=/attention= to run the design")


def check_geometry(node: dict, key: str) -> None:
    for name in POSITIVE_GEOMETRY:
        value = node.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{key}.{name}={value!r} must be an integer >= 1{' or null' if name != 'num_latents' else ''}")


def check_max_length(cfg) -> None:
    """``model.max_length`` (and ``train.max_length``) against the model's own maximum when a local checkpoint's
    config.json says it, else against MAX_LENGTH_CAP."""
    from embedgrid.io import read_json

    lengths = {"model.max_length": cfg.model.max_length, "train.max_length": cfg.train.get("max_length")}
    limit, source = MAX_LENGTH_CAP, "no checkpoint has more positions"
    checkpoint = cfg.model.checkpoint
    if isinstance(checkpoint, str) and os.path.isfile(os.path.join(checkpoint, "config.json")):
        positions = (read_json(os.path.join(checkpoint, "config.json")) or {}).get("max_position_embeddings")
        if isinstance(positions, int) and positions > 0:
            limit, source = positions, f"{checkpoint}/config.json: max_position_embeddings"
    for key, value in lengths.items():
        if value is not None and value > limit:
            raise ConfigError(f"{key}={value} exceeds the model's maximum {limit} ({source}); set it <= {limit}")


def check_data_paths(loader: dict, key: str = "data.loader") -> None:
    """``limit`` >= 1 (or null); a file loader's ``path`` that is a directory is named."""
    limit = loader.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"{key}.limit={limit!r} must be an integer >= 1 (rows to read) or null (all rows)")
    target = loader.get("_target_")
    path = loader.get("path")
    wants = FILE_LOADERS.get(target) or FILE_SOURCE_KINDS.get(loader.get("kind"))
    if wants and isinstance(path, str) and os.path.isdir(os.path.expanduser(path)):
        raise ConfigError(f"{key}.path={path!r} is a directory; {key}.path must name {wants}")
    for name, source in (loader.get("sources") or {}).items():
        if isinstance(source, dict):
            check_data_paths(source, f"{key}.sources.{name}")


def train_config(cfg) -> TrainConfig:
    """The typed train group (its own checks run in TrainConfig.__post_init__, as ConfigError)."""
    from omegaconf import OmegaConf

    try:
        return TrainConfig(**OmegaConf.to_container(cfg.train, resolve=True))
    except (ValueError, TypeError) as error:
        raise ConfigError(str(error)) from None


def eval_config(cfg) -> EvalConfig:
    """The typed eval group (unknown keys and bad values fail as ConfigError, named)."""
    from omegaconf import OmegaConf

    return EvalConfig.of(OmegaConf.to_container(cfg.eval, resolve=True))


def known_shape(cfg):
    """The backbone's shape when it is known without loading it (tiny checkpoints, the reference shapes)."""
    from omegaconf import OmegaConf

    from embedgrid.model.pooling.build import shape

    checkpoint = cfg.model.checkpoint
    if OmegaConf.is_config(checkpoint) and checkpoint.get("_target_") == "embedgrid.assets.tiny_checkpoint":
        defaults = inspect.signature(__import__("embedgrid.assets", fromlist=["x"]).tiny_checkpoint).parameters
        get = lambda k: checkpoint.get(k, defaults[k].default)  # noqa: E731
        return shape(get("hidden_size"), get("num_layers"), get("num_heads"))
    from embedgrid.model.pooling.sizes import REFERENCE_SHAPES

    if cfg.model.name in REFERENCE_SHAPES:
        _, published = REFERENCE_SHAPES[cfg.model.name]
        if {"hidden_size", "num_hidden_layers", "num_attention_heads"} <= set(published):  # no transformers import
            return shape(published["hidden_size"], published["num_hidden_layers"], published["num_attention_heads"])
        from embedgrid.model.pooling.sizes import reference_config

        return reference_config(cfg.model.name)
    return None


def check_call(node: dict, key: str, *, allowed, given_by_caller=()) -> None:
    """``node`` = ``{_target_, **kwargs}``: the target is one of embedgrid's own, and takes these kwargs."""
    import importlib

    target = node.get("_target_")
    if not isinstance(target, str) or not allowed(target):
        raise ConfigError(f"{key}._target_={target!r} is not one of embedgrid's own "
                          f"{'loaders (embedgrid.data.*)' if key.startswith('data') else ', '.join(LOGGER_TARGETS)}")
    module, _, name = target.rpartition(".")
    try:
        function = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise ConfigError(f"{key}._target_={target!r} does not exist") from None
    params = inspect.signature(function).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n in params if n not in given_by_caller and n != "self"]
    for name in node:
        if name != "_target_" and name not in accepted:
            raise ConfigError(f"{key}.{name}={node[name]!r}: {target} takes no such argument; valid: "
                              f"{', '.join(accepted)}")


register()
