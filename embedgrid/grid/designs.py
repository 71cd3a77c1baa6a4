"""Which of the paper's five designs a cell is: one label to group a sweep by (W&B, reports, console)."""
from __future__ import annotations

# Tang & Yang 2024 (docs/designs.md): (pooling, attention) -> design number
PAPER_DESIGNS = {
    ("eos_last", "causal"): (1, "eos_causal"),
    ("last_layer_trainable", "causal"): (2, "last_layer_causal"),
    ("multi_layer_trainable", "causal"): (3, "multi_layer_causal"),
    ("last_layer_trainable", "bidirectional"): (4, "last_layer_bidirectional"),
    ("multi_layer_trainable", "bidirectional"): (5, "multi_layer_bidirectional"),
}


def design_label(pooling: str, attention: str) -> str:
    """``"2 last_layer_causal"`` for a paper design, else ``"mean/causal"``: the same label however the cell was
    launched (``design=...`` or ``pooling=... attention=...``)."""
    known = PAPER_DESIGNS.get((pooling, attention))
    return f"{known[0]} {known[1]}" if known else f"{pooling}/{attention}"
