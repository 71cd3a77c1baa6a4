"""Cell identity: a readable name + a hash of everything that determines the trained weights.

Registered as the OmegaConf resolver ``${cell_name:}`` so Hydra's run and sweep directories are derived from
the cell's config, never from a timestamp or a job number. Evaluation settings are excluded: evaluating a
finished cell on more tasks reuses its trained model.
"""
from __future__ import annotations

import hashlib
import json

IDENTITY_KEYS = ("model", "pooling", "attention", "train", "data", "lora", "seed", "instruction_in_pooling")
# Identity keys added later: they enter the hash only when set away from their default, so every cell hashed
# before they existed keeps its name (and a rerun of it is still skipped).
LATER_IDENTITY_DEFAULTS = {"append_eos": True}
# The same for keys inside a group: (group, key) -> default.
LATER_GROUP_DEFAULTS = {("model", "lora_target_modules"): None, ("train", "max_length"): None}
# Descriptive keys inside a group (licence, hub reference): never part of the identity.
METADATA_KEYS = {("model", "card")}
# Settings that change how a cell runs, never what it produces.
RUNTIME_TRAIN_KEYS = ("checkpoint_every", "log_every", "progress_bar")


def identity(cfg) -> dict:
    from omegaconf import OmegaConf

    # Key by key, never the whole root: the root holds hydra.run/sweep dirs, which are ${cell_name:} themselves.
    ident = {}
    for key in IDENTITY_KEYS:
        if key in cfg:
            value = cfg[key]
            ident[key] = OmegaConf.to_container(value, resolve=True, throw_on_missing=False) \
                if OmegaConf.is_config(value) else value
    for key, default in LATER_IDENTITY_DEFAULTS.items():
        if key in cfg and cfg[key] != default:
            ident[key] = cfg[key]
    for group, key in METADATA_KEYS:
        if isinstance(ident.get(group), dict):
            ident[group] = {k: v for k, v in ident[group].items() if k != key}
    for (group, key), default in LATER_GROUP_DEFAULTS.items():
        if isinstance(ident.get(group), dict) and ident[group].get(key, default) == default:
            ident[group] = {k: v for k, v in ident[group].items() if k != key}
    train = ident.get("train")
    if isinstance(train, dict):
        if train.get("max_length") is not None and isinstance(ident.get("model"), dict):
            # a recipe's sequence length is the encoder's: the same cell as model.max_length set to it
            ident["model"] = {**ident["model"], "max_length": train["max_length"]}
        ident["train"] = {k: v for k, v in train.items() if k not in RUNTIME_TRAIN_KEYS and k != "max_length"}
    return ident


def config_hash(cfg) -> str:
    blob = json.dumps(identity(cfg), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def cell_name(cfg) -> str:
    """``<model>-<pooling>-<attention>-seed<seed>-<hash>``."""
    def pick(node, key="name"):
        try:
            return node[key]
        except Exception:  # noqa: BLE001
            return "na"

    return (f"{pick(cfg['model'])}-{pick(cfg['pooling'])}-{pick(cfg['attention'])}-seed{cfg['seed']}-"
            f"{config_hash(cfg)}")


def register_resolvers() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("cell_name"):
        OmegaConf.register_new_resolver("cell_name", lambda *, _root_: cell_name(_root_), use_cache=False)
