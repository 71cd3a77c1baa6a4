"""Cell identity: a readable name + a hash of everything that determines the trained weights.

Registered as the OmegaConf resolver ``${cell_name:}`` so Hydra's run and sweep directories are derived from
the cell's config, never from a timestamp or a job number. Evaluation settings are excluded: evaluating a
finished cell on more tasks reuses its trained model.

The hash covers the identity keys of the config and, from identity version 2, the content of the inputs whose
content can change under the same config (local files and directories, hub repositories named by a branch or
tag): see docs/identity.md. A configuration whose every input is pinned by code (the packaged offline assets)
or by a commit is hashed in the version-1 format, so every cell named before versions existed keeps its name.
"""
from __future__ import annotations

import hashlib
import json
import re

from embedgrid.errors import ConfigError

from embedgrid.data.fingerprint import Input, is_unresolved, loader_inputs, model_input

IDENTITY_VERSION = 2
IDENTITY_KEYS = ("model", "pooling", "attention", "train", "data", "lora", "seed", "instruction_in_pooling")
# Keys that joined the identity after its format was fixed, with the behaviour every cell had before the key
# existed (not always the key's default: ``train.false_negative_mask`` defaults to true, a change of the
# objective). A key enters the hash only when set away from that behaviour, so the cells that could be expressed
# before it existed keep their names. Dotted paths into the identity; a new identity key is added here.
ADDED_KEYS = {
    "append_eos": True,
    "model.lora_target_modules": None, "train.max_length": None, "train.accumulation_steps": 1,
    "train.false_negative_mask": False, "train.matryoshka_dims": None, "train.matryoshka_weights": None,
    "train.negatives": "first",
    "pooling.head.mask_padding": True, "pooling.head.normalize_layers": True,
    "pooling.head.layer_embedding_std": 0.02, "pooling.head.latent_init_std": None,
    "pooling.head.attention_scale": None,
}
# How instructions are joined to texts: part of a cell's identity when its training rows can carry instructions
# (every source but WordNet without a constant instruction) or when set away from the default; evaluation results
# always depend on it (embedgrid.evaluate.run.settings_hash).
PROMPT_KEYS = ("instruction_template", "instruction_join")
# Descriptive keys inside a group (licence, hub reference): never part of the identity.
METADATA_KEYS = {("model", "card")}
# Settings that change how a cell runs, never what it produces.
RUNTIME_TRAIN_KEYS = ("checkpoint_every", "log_every", "progress_bar", "length_sorted")
POOLING_PACKAGE, POOLING_HASHED_AS = "embedgrid.model.pooling.", "embedgrid.pooling."


def _container(cfg, key):
    from omegaconf import OmegaConf

    value = cfg[key]
    return OmegaConf.to_container(value, resolve=True, throw_on_missing=False) if OmegaConf.is_config(value) \
        else value


def _drop_added(ident: dict) -> None:
    """Remove every key of ADDED_KEYS that is at the behaviour cells had before it existed."""
    for path, before in ADDED_KEYS.items():
        *parents, key = path.split(".")
        node = ident
        for parent in parents:
            node = node.get(parent) if isinstance(node, dict) else None
        if isinstance(node, dict) and key in node and node[key] == before:
            del node[key]


def identity(cfg) -> dict:
    """The config part of the identity: the identity keys, canonicalised (see ADDED_KEYS and the notes below)."""
    # Key by key, never the whole root: the root holds hydra.run/sweep dirs, which are ${cell_name:} themselves.
    ident = {key: _container(cfg, key) for key in IDENTITY_KEYS if key in cfg}
    if "append_eos" in cfg:
        ident["append_eos"] = cfg["append_eos"]
    for group, key in METADATA_KEYS:
        if isinstance(ident.get(group), dict):
            ident[group] = {k: v for k, v in ident[group].items() if k != key}
    for group in ("model", "train", "pooling"):  # copies: _drop_added edits nested dicts in place
        if isinstance(ident.get(group), dict):
            ident[group] = dict(ident[group])
    if isinstance(ident.get("pooling"), dict) and isinstance(ident["pooling"].get("head"), dict):
        head = dict(ident["pooling"]["head"])
        if str(head.get("_target_", "")).startswith(POOLING_PACKAGE):
            # heads are hashed under the module path they had when the format was fixed
            head["_target_"] = POOLING_HASHED_AS + head["_target_"].rsplit(".", 1)[1]
        ident["pooling"]["head"] = head
    _drop_added(ident)
    train = ident.get("train")
    if isinstance(train, dict):
        if train.get("max_length") is not None and isinstance(ident.get("model"), dict):
            # a recipe's sequence length is the encoder's: the same cell as model.max_length set to it
            ident["model"] = {**ident["model"], "max_length": train["max_length"]}
        ident["train"] = {k: v for k, v in train.items() if k not in RUNTIME_TRAIN_KEYS and k != "max_length"}
        if ident["train"].get("bf16") is True:
            # bf16=true is bf16 on every device; the format's earlier ``true`` meant autocast on GPUs only, so
            # the value is hashed under a name of its own
            ident["train"]["bf16"] = "always"
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


def inputs(cfg) -> list[Input]:
    """Every input of the cell (base model, training data) with its fingerprint; see embedgrid.data.fingerprint."""
    out = []
    if "model" in cfg and "checkpoint" in cfg["model"]:
        out += model_input(_container(cfg["model"], "checkpoint"), cfg["model"].get("revision"))
    trains = "train" not in cfg or int(cfg["train"].get("max_steps", 1) or 0) > 0
    if trains and "data" in cfg and "loader" in cfg["data"]:
        out += loader_inputs(_container(cfg["data"], "loader"))
    return out


def identity_inputs(cfg) -> dict[str, str]:
    """name -> fingerprint of the inputs that enter the hash (content that can change under the same config)."""
    return {i.name: i.fingerprint for i in inputs(cfg) if i.mutable}


def model_commit(cfg) -> str | None:
    """The commit a hub model's branch or tag resolved to (the one its fingerprint names), else None: the cell
    loads exactly the weights its identity describes, even if the branch moves during the run."""
    for source in inputs(cfg):
        if source.name == "model" and source.fingerprint.startswith("hf:") and not is_unresolved(source.fingerprint):
            return source.fingerprint.rsplit("@", 1)[1]
    return None


def identity_version(cfg) -> int:
    return IDENTITY_VERSION if identity_inputs(cfg) else 1


def hashed_identity(cfg) -> dict:
    """What the hash is taken of: the version-1 form (the config alone) when no input can change under it,
    else the config, the inputs' fingerprints and the format version."""
    ident, content = identity(cfg), identity_inputs(cfg)
    if content:
        ident = {**ident, "identity_version": IDENTITY_VERSION, "inputs": content}
    return ident


def config_hash(cfg) -> str:
    blob = json.dumps(hashed_identity(cfg), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


# A value that becomes a path component (a cell or sweep directory's name): never a separator, never "..".
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]{0,127}$")
PATH_NAME_KEYS = ("model.name", "pooling.name", "attention.name", "seed", "grid")


def check_path_name(key: str, value) -> None:
    """Refuse a value that would leave its directory or be no plain name (ConfigError naming key and value)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or \
            (isinstance(value, str) and not SAFE_NAME.match(value)):
        raise ConfigError(f"{key}={value!r} becomes part of a directory name and must match {SAFE_NAME.pattern} "
                          "(letters, digits, _ . + = -; no / and no leading dot); rename it")


def check_path_names(cfg) -> None:
    """Every value that becomes a path component (``cell_name`` and the sweep's ``grid``)."""
    for key in PATH_NAME_KEYS:
        group, _, name = key.rpartition(".")
        try:
            value = cfg[group][name] if group else cfg[name]
        except Exception:  # noqa: BLE001 - a group the config does not have (cell_name writes "na")
            continue
        check_path_name(key, value)


def cell_name(cfg) -> str:
    """``<model>-<pooling>-<attention>-seed<seed>-<hash>``, plus ``-dim<k>`` for an evaluation at
    ``eval.truncate_dim=k`` (its own directory beside the full evaluation's; the hash, and so the trained model, are the same). Each part is
    checked by ``check_path_name``."""
    return base_name(cfg) + eval_suffix(cfg)


def base_name(cfg) -> str:
    """The cell name without the evaluation suffix: shared by every evaluation of one trained model."""
    def pick(node, key="name"):
        try:
            return node[key]
        except Exception:  # noqa: BLE001
            return "na"

    parts = {"model.name": pick(cfg['model']), "pooling.name": pick(cfg['pooling']),
             "attention.name": pick(cfg['attention']), "seed": cfg['seed']}
    for key, value in parts.items():
        check_path_name(key, value)
    return (f"{parts['model.name']}-{parts['pooling.name']}-{parts['attention.name']}-seed{parts['seed']}-"
            f"{config_hash(cfg)}")


def eval_suffix(cfg) -> str:
    try:
        dim = cfg["eval"]["truncate_dim"]
    except Exception:  # noqa: BLE001  (no eval group)
        return ""
    return "" if dim is None else f"-dim{int(dim)}"


def register_resolvers() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("cell_name"):
        OmegaConf.register_new_resolver("cell_name", lambda *, _root_: cell_name(_root_), use_cache=False)
