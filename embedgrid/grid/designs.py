"""Which of the paper's five designs a cell is: one label to group a sweep by (W&B, reports, console), and the
``design=`` presets (``conf/design/*.yaml``), generated from the one table (``cellfiles.designs``):
``python -m embedgrid.grid.designs`` rewrites them; tests/grid/test_designs.py fails when they differ."""
from __future__ import annotations

from pathlib import Path

from cellfiles.designs import PAPER_TABLE, PaperDesign
from embedgrid.io import atomic_write

# (pooling, attention) -> (design number, preset name)
PAPER_DESIGNS = {(d.pooling, d.attention): (d.number, d.name) for d in PAPER_TABLE}
CONF_DESIGN = Path(__file__).resolve().parents[2] / "conf" / "design"


def design_label(pooling: str, attention: str) -> str:
    """``"2 last_layer_causal"`` for a paper design, else ``"mean/causal"``: the same label however the cell was
    launched (``design=...`` or ``pooling=... attention=...``)."""
    known = PAPER_DESIGNS.get((pooling, attention))
    return f"{known[0]} {known[1]}" if known else f"{pooling}/{attention}"


def preset_yaml(design: PaperDesign) -> str:
    """``conf/design/<name>.yaml``: pooling and attention overridden together (nothing else enters the config)."""
    return (f"# @package _global_\n# Paper design {design.number}: {design.summary}.\ndefaults:\n"
            f"  - override /pooling: {design.pooling}\n  - override /attention: {design.attention}\n")


def write_presets(directory: Path = CONF_DESIGN) -> list[Path]:
    paths = []
    for design in PAPER_TABLE:
        path = directory / f"{design.name}.yaml"
        text = preset_yaml(design)
        atomic_write(path, lambda tmp, text=text: Path(tmp).write_text(text))
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_presets():
        print(written)
