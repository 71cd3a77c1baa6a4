"""Sweep helpers shared by the grid and SLURM tests."""
from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import TINY

GRID = [*TINY, "eval.tasks=[LeeDocumentSTS]", "data.loader.limit=512"]
PAPER_DESIGNS = {("eos_last", "causal"), ("last_layer_trainable", "causal"), ("multi_layer_trainable", "causal"),
                 ("last_layer_trainable", "bidirectional"), ("multi_layer_trainable", "bidirectional")}


def cell_records(sweep_dir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/cell.json")}


def dry_run_states(stdout: str) -> list[str]:
    return [line.split("]")[0].strip(" [") for line in stdout.splitlines() if line.startswith("  [")]
