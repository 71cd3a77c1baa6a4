"""The dry run's cost estimate: device-hours of a sweep's unfinished cells, from the ``cost`` records of finished
cells of the same model and recipe in the sweep directory (the designs of a grid share a recipe), with its basis."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from statistics import fmean

from embedgrid.grid.celldir import CELL_FILE
from embedgrid.io import read_json

# What decides a cell's cost besides its design: the model, how it trains, on what, and what it evaluates.
RECIPE_KEYS = ("model", "train", "lora", "data", "threads", "device")
EVAL_RECIPE_KEYS = ("tasks", "benchmark", "max_samples", "task_samples", "batch_size", "batch_tokens", "compile")


def recipe(config: dict) -> str:
    """A short key of the cost-relevant config (a composed config as a plain dict, or cell.json's ``config``)."""
    model = {k: v for k, v in (config.get("model") or {}).items() if k != "card"}
    relevant = {**{key: config.get(key) for key in RECIPE_KEYS}, "model": model,
                "eval": {key: (config.get("eval") or {}).get(key) for key in EVAL_RECIPE_KEYS}}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:12]


def composed_recipe(cfg) -> str:
    """``recipe`` of a composed config (only its cost-relevant groups are resolved, never ``hydra``)."""
    from omegaconf import OmegaConf

    def plain(value):
        return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value

    return recipe({key: plain(cfg.get(key)) for key in (*RECIPE_KEYS, "eval")})


def finished_costs(sweep_dir: Path) -> dict[str, list[dict]]:
    """recipe -> cost records of the done cells below ``sweep_dir`` (unreadable records are skipped)."""
    by_recipe: dict[str, list[dict]] = {}
    for path in sorted(Path(sweep_dir).glob(f"*/{CELL_FILE}")):
        try:
            record = read_json(path)
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict) or record.get("status") != "done" or not isinstance(record.get("cost"), dict):
            continue
        hours = (record["cost"].get("total") or {}).get("device_hours")
        if isinstance(hours, (int, float)) and isinstance(record.get("config"), dict):
            by_recipe.setdefault(recipe(record["config"]), []).append(record["cost"])
    return by_recipe


def estimate(todo: list[tuple[str, str]], sweep_dir: Path) -> str:
    """One paragraph: the device-hours of ``todo`` ([(cell_dir, recipe)]) and the basis of each part."""
    if not todo:
        return "cost estimate: nothing to run"
    known = finished_costs(sweep_dir)
    hours, bases, unknown = 0.0, [], 0
    for key in dict.fromkeys(r for _, r in todo):
        n = sum(r == key for _, r in todo)
        if key not in known:
            unknown += n
            continue
        costs = known[key]
        per_cell = fmean(c["total"]["device_hours"] for c in costs)
        hours += n * per_cell
        devices = sorted({f"{(c.get('device') or {}).get('count', '?')}x {(c.get('device') or {}).get('name', '?')}"
                          for c in costs})
        bases.append(f"{n} cell(s) x {per_cell:.4g} device-hours, the mean of {len(costs)} finished cell(s) of the "
                     f"same model and recipe on {', '.join(devices)}")
    lines = [f"cost estimate: {hours:.4g} device-hours for {len(todo) - unknown} of {len(todo)} cell(s) to run"]
    lines += [f"  basis: {b}" for b in bases]
    if unknown:
        lines.append(f"  {unknown} cell(s) have no finished cell of the same model and recipe in {sweep_dir}: no "
                     "estimate (run one of them first; its cell.json records what it cost)")
    return "\n".join(lines)
