"""The cost table of a sweep: per design, what its cells cost (cell.json's ``cost`` record), and the grid's total.

Read from the cell directories only (nothing here imports embedgrid): ``cost.total.device_hours`` per cell, and
per phase ``tokens``, ``wall_s`` and ``mfu`` (training: forward + backward tokens; evaluate: tokens encoded).
"""
from __future__ import annotations

import math

PHASE_COLUMNS = (("train", "train"), ("evaluate", "encode"))


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _phase(cost: dict, name: str) -> dict:
    phases = cost.get("phases") if isinstance(cost.get("phases"), dict) else {}
    entry = phases.get(name)
    return entry if isinstance(entry, dict) else {}


def cost_rows(cells, labels: dict) -> tuple[list[list], dict]:
    """``([design, cells, device-hours/cell, train tok/s, train MFU, encode tok/s, encode MFU, devices], total)``;
    rates pool tokens over wall time across the design's cells, MFU is their wall-weighted mean."""
    rows, total = [], {"cells": 0, "device_hours": 0.0, "wall_s": 0.0, "devices": set()}
    if cells is None or not len(cells) or "cost" not in cells:
        return rows, total
    for design in sorted(set(cells["design"])):
        costs = [c for c in cells.loc[cells["design"] == design, "cost"] if isinstance(c, dict)]
        costs = [c for c in costs if isinstance(c.get("total"), dict)]
        if not costs:
            continue
        hours = [h for h in (_number(c["total"].get("device_hours")) for c in costs) if h is not None]
        devices = sorted({f"{(c.get('device') or {}).get('count', '?')}× {(c.get('device') or {}).get('name', '?')}"
                          for c in costs if isinstance(c.get("device"), dict)})
        row = [labels.get(design, str(design)), len(costs), sum(hours) / len(hours) if hours else None]
        for phase, _ in PHASE_COLUMNS:
            entries = [_phase(c, phase) for c in costs]
            tokens = sum(_number(e.get("tokens")) or 0 for e in entries)
            wall = sum(_number(e.get("wall_s")) or 0 for e in entries)
            weighted = [(_number(e.get("mfu")), _number(e.get("wall_s"))) for e in entries]
            weighted = [(m, w) for m, w in weighted if m is not None and w]
            row.append(tokens / wall if tokens and wall else None)
            row.append(sum(m * w for m, w in weighted) / sum(w for _, w in weighted) if weighted else None)
        row.append(", ".join(devices))
        rows.append(row)
        total["cells"] += len(costs)
        total["device_hours"] += sum(hours)
        total["wall_s"] += sum(_number(c["total"].get("wall_s")) or 0 for c in costs)
        total["devices"].update(devices)
    return rows, total


def cost_section(cells, labels: dict, table) -> str:
    """Markdown: the per-design table and the grid's total (``table`` renders header + rows)."""
    rows, total = cost_rows(cells, labels)
    if not rows:
        return "_No cell records a cost._"

    def fmt(value, spec):
        return "—" if value is None else format(value, spec)

    body = [[design, n, fmt(hours, ".4g"), fmt(train_rate, ",.0f"), fmt(train_mfu, ".2%"), fmt(enc_rate, ",.0f"),
             fmt(enc_mfu, ".2%"), devices]
            for design, n, hours, train_rate, train_mfu, enc_rate, enc_mfu, devices in rows]
    text = table(["design", "cells", "device-hours / cell", "train tokens/s", "train MFU", "encode tokens/s",
                  "encode MFU", "devices"], body)
    return (text + f"\n\n**Grid total:** {total['device_hours']:.4g} device-hours over {total['cells']} cell(s) "
            f"({total['wall_s'] / 3600:.3g} h of cell wall time; {', '.join(sorted(total['devices']))}). "
            "Device-hours = wall time × devices held, summed over the phases build, train, save and evaluate (and "
            "over a resumed cell's attempts); MFU = model FLOPs / s over the devices' dense peak for the dtype "
            "(datasheet for known GPUs, a measured GEMM otherwise).")
