"""Pooling heads, one small class each; configs select them with ``_target_``."""
from embedgrid.pooling.base import Pooling
from embedgrid.pooling.eos_last import EosLastPooling
from embedgrid.pooling.latent_attention import LatentAttentionPooling
from embedgrid.pooling.mean import MeanPooling
from embedgrid.pooling.multi_layer import MultiLayerPooling

# The paper's design names -> classes, for the Python API (the CLI selects them through conf/pooling/).
POOLINGS = {
    "eos_last": EosLastPooling,
    "mean": MeanPooling,
    "last_layer_trainable": LatentAttentionPooling,
    "multi_layer_trainable": MultiLayerPooling,
}


def pooling_class(name: str) -> type[Pooling]:
    if name not in POOLINGS:
        raise ValueError(f"unknown pooling '{name}'; valid: {', '.join(POOLINGS)}")
    return POOLINGS[name]


__all__ = ["POOLINGS", "Pooling", "EosLastPooling", "MeanPooling", "LatentAttentionPooling", "MultiLayerPooling",
           "pooling_class"]
