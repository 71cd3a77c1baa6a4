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
# The same for keys inside a group: (group, key) -> the behaviour cells had before the key existed, which is not
# always the key's default: ``train.false_negative_mask`` defaults to true, a change of the objective, so cells
# trained with it get new names while ``false_negative_mask=false`` keeps the old ones.
LATER_GROUP_DEFAULTS = {("model", "lora_target_modules"): None, ("train", "max_length"): None,
                        ("train", "accumulation_steps"): 1, ("train", "false_negative_mask"): False,
                        ("train", "negatives"): "first"}
# The same for the Perceiver switches inside ``pooling.head`` (designs 3/5 kept their computation).
LATER_POOLING_DEFAULTS = {"mask_padding": True, "normalize_layers": True, "layer_embedding_std": 0.02,
                          "latent_init_std": None, "attention_scale": None}
# How instructions are joined to texts: part of a cell's identity when its training rows can carry instructions
# (every source but WordNet without a constant instruction) or when set away from the default; evaluation results
# always depend on it (embedgrid.evaluate.run.settings_hash).
PROMPT_KEYS = ("instruction_template", "instruction_join")
# Descriptive keys inside a group (licence, hub reference): never part of the identity.
METADATA_KEYS = {("model", "card")}
# Settings that change how a cell runs, never what it produces.
RUNTIME_TRAIN_KEYS = ("checkpoint_every", "log_every", "progress_bar", "length_sorted")


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
        if ident["train"].get("bf16") is True:
            # bf16=true meant "autocast on GPU" until issue 17; now it is bf16 on CPUs too, so a CPU cell trained
            # under the old meaning (float32) must not be taken for one trained under the new (bf16)
            ident["train"]["bf16"] = "always"
    head = ident.get("pooling", {}).get("head") if isinstance(ident.get("pooling"), dict) else None
    if isinstance(head, dict) and str(head.get("_target_", "")).startswith("embedgrid.model.pooling."):
        # heads are hashed under the name they had when identities were fixed (embedgrid.pooling.<Class>)
        head = {**head, "_target_": "embedgrid.pooling." + head["_target_"].rsplit(".", 1)[1]}
    if isinstance(head, dict):
        ident["pooling"] = {**ident["pooling"], "head": {k: v for k, v in head.items()
                                                         if LATER_POOLING_DEFAULTS.get(k, object()) != v}}
    prompt = {k: cfg[k] for k in PROMPT_KEYS if k in cfg}
    if prompt and (prompt != prompt_defaults() or training_sees_instructions(cfg)):
        ident["prompt"] = prompt
    return ident


def prompt_defaults() -> dict:
    from embedgrid.model.spec import DEFAULT_INSTRUCTION_JOIN, DEFAULT_INSTRUCTION_TEMPLATE

    return {"instruction_template": DEFAULT_INSTRUCTION_TEMPLATE, "instruction_join": DEFAULT_INSTRUCTION_JOIN}


def training_sees_instructions(cfg) -> bool:
    """Whether the training rows can carry an instruction: WordNet rows only with a constant one."""
    try:
        loader = cfg["data"]["loader"]
        target = str(loader.get("_target_", ""))
    except Exception:  # noqa: BLE001  (no data group: nothing trains)
        return False
    return loader.get("instruction") is not None or not target.endswith("wordnet.definition_synonym_rows")


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
