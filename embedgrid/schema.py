"""Typed schema under conf/config.yaml (Hydra ConfigStore), so mistakes fail at compose time, before any job.

``seed=abc``, ``threads=two``, ``train.max_steps=ten`` or a misspelt key in a ``conf/train/*.yaml`` file are
reported by Hydra with the key and the expected type. The schema types the top-level knobs, ``train``
(embedgrid.train.config.TrainConfig, the dataclass the trainer is built from) and ``lora`` (spec.LoraSpec);
groups whose keys depend on a ``_target_`` (model, pooling, data, eval, logger) are checked when instantiated.
Merged into an untyped root, it adds types without forbidding new top-level keys.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore

from embedgrid.spec import LoraSpec
from embedgrid.train.config import TrainConfig


@dataclass
class GridSchema:
    seed: int = 0
    grid: str = "default"
    threads: Optional[int] = None
    device: str = "auto"
    instruction_in_pooling: bool = True
    append_eos: bool = True
    dry_run: bool = False
    analyze: bool = True
    train: TrainConfig = field(default_factory=TrainConfig)
    lora: LoraSpec = field(default_factory=LoraSpec)
    model: Any = None
    pooling: Any = None
    attention: Any = None
    data: Any = None
    eval: Any = None
    logger: Any = None


def register() -> None:
    ConfigStore.instance().store(name="embedgrid_schema", node=GridSchema)


register()
