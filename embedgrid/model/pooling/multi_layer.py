from __future__ import annotations

from embedgrid.model.pooling.perceiver import PerceiverPooling


class MultiLayerPooling(PerceiverPooling):
    """Multi-Layers Trainable Pooling (designs 3 and 5): :class:`PerceiverPooling` reading one vector per layer.

    Its own name keeps the cells (and saved encoders) of designs 3/5 from before the shared Perceiver head:
    the same computation, the same parameter names and init order.
    """

    def __init__(self, hidden_size: int, num_layers: int, is_causal: bool, backbone_num_heads: int | None = None,
                 num_latents: int = 512, num_heads: int | None = None, head_dim: int | None = None,
                 ff_mult: int = 4, output_dim: int | None = None, layer_reduce: str = "auto",
                 normalize_layers: bool = True, layer_embedding_std: float = 0.02,
                 latent_init_std: float | None = None, attention_scale: float | None = None):
        super().__init__(hidden_size, num_layers, is_causal, backbone_num_heads, input="layers",
                         num_latents=num_latents, num_heads=num_heads, head_dim=head_dim, ff_mult=ff_mult,
                         output_dim=output_dim, layer_reduce=layer_reduce, normalize_layers=normalize_layers,
                         layer_embedding_std=layer_embedding_std, latent_init_std=latent_init_std,
                         attention_scale=attention_scale)
