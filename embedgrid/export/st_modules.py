"""A sentence-transformers module for embedgrid's trainable pooling heads (loadable where embedgrid is installed).

``eos_last`` and ``mean`` export as sentence-transformers' own ``Pooling`` (no embedgrid needed to load them); the
latent-attention and multi-layer heads have no counterpart there, so they travel as this module: the head's
pooling spec and sizes in ``config.json``, its weights in ``model.safetensors``, rebuilt by embedgrid's own
pooling builder. It reads the Transformer module's ``token_embeddings`` (and ``all_layer_embeddings`` for
multi-layer heads: the exported backbone config sets ``output_hidden_states``).
"""
from __future__ import annotations

import json
import os
from typing import Any

import torch
from sentence_transformers.base.modules import Module


class EmbedgridPooling(Module):
    """``features`` -> ``sentence_embedding`` through an embedgrid pooling head (L2 normalisation follows as its
    own ``Normalize`` module).

    Args:
        pooling: the head's spec, ``{"_target_": "embedgrid.model.pooling.<Class>", **kwargs}`` (only embedgrid's own
            pooling classes are accepted).
        hidden_size, num_layers, backbone_num_heads, is_causal: the backbone sizes the head was built with.
        skip_leading: number of leading tokens (BOS) excluded from pooling (``instruction_in_pooling=false``).
    """

    config_keys = ["pooling", "hidden_size", "num_layers", "backbone_num_heads", "is_causal", "skip_leading"]

    def __init__(self, pooling: dict, hidden_size: int, num_layers: int, is_causal: bool,
                 backbone_num_heads: int | None = None, skip_leading: int = 0):
        super().__init__()
        from embedgrid.model.pooling.build import build_pooling, shape  # embedgrid's own pooling classes only

        self.pooling, self.hidden_size, self.num_layers = dict(pooling), hidden_size, num_layers
        self.backbone_num_heads, self.is_causal, self.skip_leading = backbone_num_heads, is_causal, skip_leading
        self.head = build_pooling(self.pooling, shape(hidden_size, num_layers, backbone_num_heads),
                                  "causal" if is_causal else "bidirectional")

    def forward(self, features: dict[str, Any], **kwargs) -> dict[str, Any]:
        from embedgrid.model.pooling.base import at_least_float32

        attention_mask = features["attention_mask"]
        states = tuple(features["all_layer_embeddings"]) if self.head.needs_all_layers \
            else (features["token_embeddings"],)
        pool_mask = attention_mask.clone()
        if self.skip_leading:
            # right padding (the exported tokenizer pads right): a text's leading tokens are its first positions
            pool_mask[:, :self.skip_leading] = 0
        features["sentence_embedding"] = at_least_float32(self.head(states, attention_mask, pool_mask))
        return features

    def get_embedding_dimension(self) -> int:
        return self.head.output_dim

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        from safetensors.torch import save_file

        os.makedirs(output_path, exist_ok=True)
        self.save_config(output_path)
        state = {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
        save_file(state, os.path.join(output_path, "model.safetensors"))

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", token=None, cache_folder=None, revision=None,
             local_files_only: bool = False, **kwargs):
        from safetensors.torch import load_file

        hub = dict(subfolder=subfolder, token=token, cache_folder=cache_folder, revision=revision,
                   local_files_only=local_files_only)
        config = cls.load_config(model_name_or_path, **hub)
        module = cls(**config)
        weights = cls.load_file_path(model_name_or_path, filename="model.safetensors", **hub)
        module.head.load_state_dict(load_file(weights))
        return module

    def __repr__(self) -> str:
        return f"EmbedgridPooling({json.dumps(self.pooling)})"
