"""Parameter counts of the pooling heads for a backbone shape, built on the meta device (no weights, no memory).

    python -m embedgrid.model.pooling.sizes                 # every conf/pooling head x the reference backbone shapes,
                                                      # then the Perceiver by part: embedgrid's default vs the paper's
    python -m embedgrid.model.pooling.sizes --json out.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"

# Published configs of the grid's backbones (their hub checkpoints are not needed to count parameters).
# transformers' MistralConfig() defaults are Mistral-7B-v0.1.
REFERENCE_SHAPES = {
    "smollm2_135m": ("LlamaConfig", {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                                     "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64,
                                     "vocab_size": 49152, "tie_word_embeddings": True}),
    "qwen2_0_5b": ("Qwen2Config", {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
                                   "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
                                   "tie_word_embeddings": True}),
    "mistral_7b": ("MistralConfig", {}),
}


def reference_config(name: str):
    import transformers

    if name not in REFERENCE_SHAPES:
        raise ValueError(f"unknown reference shape '{name}'; valid: {', '.join(REFERENCE_SHAPES)}")
    cls, kwargs = REFERENCE_SHAPES[name]
    return getattr(transformers, cls)(**kwargs)


def meta_backbone(config):
    """The bare decoder on the meta device: shapes only, so a 7B model costs no memory."""
    import torch
    from transformers import AutoModel

    with torch.device("meta"):
        return AutoModel.from_config(config)


def meta_pooling(backbone_config, head: dict, attention: str = "causal"):
    """The pooling head ``head`` (a conf/pooling ``head`` node) sized for ``backbone_config``, on the meta device."""
    import torch

    from embedgrid.model.pooling.build import build_pooling

    with torch.device("meta"):
        return build_pooling(dict(head), backbone_config, attention)


def _group_option(conf_dir: Path, group: str, name: str):
    """One option of a config group, its same-group ``defaults`` merged in (what Hydra would compose)."""
    from omegaconf import OmegaConf

    node = OmegaConf.load(Path(conf_dir) / group / f"{name}.yaml")
    parents = [d for d in node.pop("defaults", []) if d != "_self_"]
    return OmegaConf.merge(*[_group_option(conf_dir, group, parent) for parent in parents], node)


def conf_heads(conf_dir: Path = CONF_DIR, perceiver: str = "default") -> dict[str, dict]:
    """Every conf/pooling option's ``head`` node, by name, resolved against ``conf/perceiver/<perceiver>.yaml``."""
    from omegaconf import OmegaConf

    shared = _group_option(conf_dir, "perceiver", perceiver)
    heads = {}
    for path in sorted((Path(conf_dir) / "pooling").glob("*.yaml")):
        root = OmegaConf.create({"perceiver": shared, "pooling": OmegaConf.load(path)})
        heads[str(root.pooling.name)] = OmegaConf.to_container(root.pooling.head, resolve=True)
    return heads


PARTS = {"to_q": ("block.to_q",), "to_kv": ("block.to_kv",), "to_out": ("block.to_out",), "ff": ("block.ff",),
         "latents": ("latents",), "layer_embedding": ("layer_weights",)}


def parts(head) -> dict[str, int]:
    """Parameters of a cross-attention head by part (norms and an output projection under ``other``)."""
    counts = dict.fromkeys([*PARTS, "other"], 0)
    for name, p in head.named_parameters():
        part = next((key for key, prefixes in PARTS.items() if name.startswith(prefixes)), "other")
        counts[part] += p.numel()
    return counts


def parameter_table(shapes=tuple(REFERENCE_SHAPES), conf_dir: Path = CONF_DIR) -> list[dict]:
    heads = conf_heads(conf_dir)
    rows = []
    for shape in shapes:
        config = reference_config(shape)
        backbone = sum(p.numel() for p in meta_backbone(config).parameters())
        row = {"model": shape, "hidden_size": config.hidden_size, "num_layers": config.num_hidden_layers,
               "num_heads": config.num_attention_heads, "backbone_parameters": backbone}
        for name, head in heads.items():
            row[name] = meta_pooling(config, head).num_parameters
        rows.append(row)
    return rows


def perceiver_table(shapes=tuple(REFERENCE_SHAPES), conf_dir: Path = CONF_DIR,
                    presets=("default", "paper")) -> list[dict]:
    """The design-3 Perceiver (``multi_layer_trainable``) by part, per ``conf/perceiver`` preset and shape."""
    rows = []
    for preset in presets:
        head_cfg = conf_heads(conf_dir, preset)["multi_layer_trainable"]
        for shape in shapes:
            head = meta_pooling(reference_config(shape), head_cfg)
            rows.append({"perceiver": preset, "model": shape, "latents x heads x head_dim":
                         f"{head.latents.shape[0]} x {head.block.num_heads} x {head.block.head_dim}",
                         **parts(head), "total": head.num_parameters})
    return rows


def _print(rows: list[dict]) -> None:
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(f"{v:,}" if isinstance(v, int) else str(v) for v in row.values()) + " |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=list(REFERENCE_SHAPES), choices=list(REFERENCE_SHAPES))
    parser.add_argument("--conf", default=str(CONF_DIR), help="config directory holding pooling/*.yaml")
    parser.add_argument("--json", help="also write the table here")
    args = parser.parse_args(argv)
    rows = parameter_table(args.shapes, Path(args.conf))
    _print(rows)
    print()
    perceiver = perceiver_table(args.shapes, Path(args.conf))
    _print(perceiver)
    if args.json:
        from embedgrid.io import write_json

        write_json(args.json, {"heads": rows, "perceiver": perceiver})


if __name__ == "__main__":
    main()
