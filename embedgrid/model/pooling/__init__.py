"""Pooling heads, one small class each; configs select them with ``_target_``."""
from embedgrid.model.pooling.base import Pooling
from embedgrid.model.pooling.eos_last import EosLastPooling
from embedgrid.model.pooling.latent_attention import LatentAttentionPooling
from embedgrid.model.pooling.mean import MeanPooling
from embedgrid.model.pooling.multi_layer import MultiLayerPooling
from embedgrid.model.pooling.perceiver import PerceiverPooling
from embedgrid.model.pooling.weighted_mean import WeightedMeanPooling

# conf/pooling option names -> classes, for the Python API (the CLI selects them through conf/pooling/).
# Designs 2/4 (last_layer_trainable) and 3/5 (multi_layer_trainable) are the one Perceiver head with another
# input; nv_embed (NV-Embed's latent attention) and weighted_mean (SGPT's and llm2vec's position-weighted mean) are
# available to any grid but are not paper designs.
POOLINGS = {
    "eos_last": EosLastPooling,
    "mean": MeanPooling,
    "last_layer_trainable": PerceiverPooling,
    "multi_layer_trainable": MultiLayerPooling,
    "nv_embed": LatentAttentionPooling,
    "weighted_mean": WeightedMeanPooling,
}


def pooling_class(name: str) -> type[Pooling]:
    if name not in POOLINGS:
        raise ValueError(f"unknown pooling '{name}'; valid: {', '.join(POOLINGS)}")
    return POOLINGS[name]


__all__ = ["POOLINGS", "Pooling", "EosLastPooling", "MeanPooling", "LatentAttentionPooling", "MultiLayerPooling",
           "PerceiverPooling", "WeightedMeanPooling", "pooling_class"]
