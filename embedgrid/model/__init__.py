"""The model wing: backbone with its attention switch, LoRA, pooling heads, the encoder and its saved format."""
