"""Export a trained cell as a sentence-transformers model directory (and optionally push it to the hub).

``python -m embedgrid.export CELL_DIR OUT_DIR [--push-to-hub REPO_ID]``. The directory holds the backbone
(LoRA merged, attention mode in its ``config.json``: ``is_causal: false`` loads bidirectional), a tokenizer whose
post-processor appends EOS exactly as embedgrid's encoder does (right padding), the pooling (sentence-transformers'
own ``Pooling`` for ``eos_last``/``mean``, :class:`~embedgrid.export.st_modules.EmbedgridPooling` for trainable
heads), ``Normalize``, ``embedgrid.json`` (the cell, its instruction settings) and a model card.
"""
from __future__ import annotations

from embedgrid.export.writer import export_cell

__all__ = ["export_cell"]
