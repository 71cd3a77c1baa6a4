"""The paper's five designs (Tang & Yang 2024; docs/designs.md): the one table.

``conf/design/<name>.yaml`` are generated from it (``python -m embedgrid.grid.designs``; a test fails when they
differ or a preset is not in the table), ``embedgrid.grid.designs`` labels cells with it and checks ``design=``
against it, and ``analysis.designs`` numbers the designs of a sweep with it.
"""
from __future__ import annotations

from typing import NamedTuple


class PaperDesign(NamedTuple):
    number: int
    name: str        # the preset: design=<name>
    pooling: str     # conf/pooling/<pooling>.yaml
    attention: str   # conf/attention/<attention>.yaml
    summary: str     # the preset's header line


PAPER_TABLE = (
    PaperDesign(1, "eos_causal", "eos_last", "causal", "EOS / last-token pooling, causal attention"),
    PaperDesign(2, "last_layer_causal", "last_layer_trainable", "causal",
                "last-layer trainable pooling, causal attention"),
    PaperDesign(3, "multi_layer_causal", "multi_layer_trainable", "causal",
                "multi-layers trainable pooling, causal attention"),
    PaperDesign(4, "last_layer_bidirectional", "last_layer_trainable", "bidirectional",
                "last-layer trainable pooling, bidirectional attention"),
    PaperDesign(5, "multi_layer_bidirectional", "multi_layer_trainable", "bidirectional",
                "multi-layers trainable pooling, bidirectional attention"),
)
