"""File names of a saved encoder (``Encoder.save``/``load_encoder``); a cell keeps one in ``<cell>/model/``.

Kept free of torch so the cell directory's checks can name these files without loading a model.
"""
SPEC_FILE, POOLING_FILE, ADAPTER_DIR = "encoder.json", "pooling.safetensors", "adapter"
