"""One cell's typed plan: its composed config resolved once, at the top of the cell.

``resolve_plan(cfg)`` is the one place that reads a cell's composed config (a Hydra ``DictConfig``); everything
below ``embedgrid.grid.cell.run`` (the cell directory, the logger, training, evaluation, the model meta) takes
the plan or one of its typed parts. Identity is still computed where it always was (embedgrid.grid.cellid, from
the composed config); the plan only carries the results.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

from omegaconf import DictConfig, OmegaConf

from embedgrid.data.fingerprint import Input
from embedgrid.evaluate.config import EvalConfig
from embedgrid.grid.cellid import base_name, config_hash, eval_suffix, identity_version, inputs, model_commit
from embedgrid.grid.designs import design_label
from embedgrid.grid.schema import eval_config, train_config
from embedgrid.model.spec import EncoderSpec, LoraSpec
from embedgrid.secrets import redact
from embedgrid.train.config import TrainConfig


@dataclass(frozen=True)
class CellIdentity:
    """Who the cell is: its name (directory, W&B run, mteb model name) and the hash of what determines its
    trained weights (evaluation settings excluded), as embedgrid.grid.cellid computes them."""

    name: str          # base_name + eval_suffix (cellid.cell_name)
    base_name: str     # shared by every evaluation of one trained model
    eval_suffix: str   # "-dim<k>" for an evaluation at eval.truncate_dim=k, else ""
    config_hash: str   # cellid.config_hash: the trained model's identity
    model: str
    pooling: str
    attention: str
    seed: int

    @property
    def design(self) -> dict:
        """``cell.json``'s ``design`` entry."""
        return {"model": self.model, "pooling": self.pooling, "attention": self.attention, "seed": self.seed}

    @property
    def design_label(self) -> str:
        return design_label(self.pooling, self.attention)


@dataclass(frozen=True)
class DataPlan:
    """The training rows: ``loader`` (``{_target_, **kwargs}``, resolved) is instantiated into them."""

    name: str
    loader: dict


@dataclass(frozen=True)
class RuntimePlan:
    """How the cell runs, never what it produces."""

    grid: str
    seed: int
    threads: int | None
    device: str                                   # as configured: auto | cpu | cuda[:N] | mps
    logger: dict = field(repr=False)              # {_target_, **kwargs}; may hold an api_key: never printed


@dataclass(frozen=True)
class InputsPlan:
    """The cell's inputs (base model, training data) for its provenance; a pinned input's fingerprint is
    computed when the record first asks for it (embedgrid.data.fingerprint.Input)."""

    inputs: tuple[Input, ...] = field(repr=False)
    identity_version: int
    configured_revision: str | None  # model.revision: the model's revision when it has no fingerprint

    def fingerprints(self) -> dict[str, str]:
        return {i.name: i.fingerprint for i in self.inputs}


@dataclass(frozen=True)
class CellPlan:
    identity: CellIdentity
    encoder: EncoderSpec
    train: TrainConfig
    eval: EvalConfig
    data: DataPlan
    runtime: RuntimePlan
    provenance: InputsPlan
    card: dict = field(repr=False)    # model.card: licence, languages, base model (the mteb model meta)
    config: dict = field(repr=False)  # the composed config, resolved, secrets redacted: what cell.json saves

    @property
    def prompt(self) -> dict:
        """How instructions are joined to texts: part of every evaluation's settings (scores_cover)."""
        return {"instruction_template": self.encoder.instruction_template,
                "instruction_join": self.encoder.instruction_join}

    @property
    def trains(self) -> bool:
        return self.train.max_steps > 0

    def saved_config(self) -> dict:
        return copy.deepcopy(self.config)


def _plain(node):
    return OmegaConf.to_container(node, resolve=True, throw_on_missing=False) if OmegaConf.is_config(node) else node


def _encoder(cfg: DictConfig, train: TrainConfig, name: str) -> EncoderSpec:
    model = cfg.model
    lora = LoraSpec(**OmegaConf.to_container(cfg.lora, resolve=True))
    if model.lora_target_modules:  # the model's own layer names (BERT has no q_proj ...)
        lora = replace(lora, target_modules=list(model.lora_target_modules))
    return EncoderSpec(
        checkpoint=OmegaConf.to_container(model.checkpoint, resolve=True) if OmegaConf.is_config(model.checkpoint)
        else model.checkpoint,
        pooling=OmegaConf.to_container(cfg.pooling.head, resolve=True), attention=cfg.attention.name,
        revision=model_commit(cfg) or model.revision, dtype=model.dtype, attn_implementation=model.attn_implementation,
        trust_remote_code=model.trust_remote_code, max_length=train.max_length or model.max_length,
        pool_instruction=cfg.instruction_in_pooling, append_eos=cfg.append_eos,
        instruction_template=cfg.instruction_template, instruction_join=cfg.instruction_join, lora=lora,
        name=name)


def encoder_spec(cfg: DictConfig) -> EncoderSpec:
    """The EncoderSpec of a composed config (the typed model, pooling, attention, lora and train groups)."""
    return _encoder(cfg, train_config(cfg), base_name(cfg) + eval_suffix(cfg))


def resolve_plan(cfg: DictConfig) -> CellPlan:
    """The cell's plan from its composed config (``schema.check`` has accepted it)."""
    name = base_name(cfg)
    suffix = eval_suffix(cfg)
    train = train_config(cfg)
    return CellPlan(
        identity=CellIdentity(name=name + suffix, base_name=name, eval_suffix=suffix, config_hash=config_hash(cfg),
                              model=str(cfg.model.name), pooling=str(cfg.pooling.name),
                              attention=str(cfg.attention.name), seed=int(cfg.seed)),
        encoder=_encoder(cfg, train, name + suffix),
        train=train,
        eval=eval_config(cfg),
        data=DataPlan(name=str(cfg.data.name), loader=_plain(cfg.data.loader)),
        runtime=RuntimePlan(grid=cfg.grid, seed=int(cfg.seed),
                            threads=None if cfg.threads is None else int(cfg.threads), device=str(cfg.device),
                            logger=_plain(cfg.logger)),
        provenance=InputsPlan(inputs=tuple(inputs(cfg)), identity_version=identity_version(cfg),
                              configured_revision=cfg.model.get("revision")),
        card=dict(_plain(cfg.model.card) or {}),
        config=redact({k: _plain(cfg[k]) for k in cfg if k != "hydra"}),
    )
