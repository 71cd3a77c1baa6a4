"""Training checkpoints in the cell directory: trainable weights (safetensors) + optimizer/scheduler/RNG state.

The state file holds only tensors and plain containers, so it loads with ``torch.load(weights_only=True)``.
Both files are written to a temp directory that is renamed into place, so a kill never leaves a torn checkpoint.
"""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import torch

from embedgrid.celldir import LAST_CHECKPOINT
from embedgrid.io import read_json, write_json

WEIGHTS = "trainable.safetensors"
STATE = "state.pt"
META = "meta.json"


def trainable_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
             "python_version": random.getstate()[0], "python_gauss": random.getstate()[2]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(directory: Path, model, optimizer, scheduler, step: int, extra: dict | None = None) -> Path:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / LAST_CHECKPOINT
    tmp = directory / f".{LAST_CHECKPOINT}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file({k: v.detach().cpu().contiguous() for k, v in trainable_parameters(model).items()}, tmp / WEIGHTS)
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()},
               tmp / STATE)
    write_json(tmp / META, {"step": step, **(extra or {})})
    old = directory / f".{LAST_CHECKPOINT}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(directory: Path, model, optimizer, scheduler) -> dict | None:
    """Restore the last checkpoint into model/optimizer/scheduler/RNG; returns its meta, or None if none."""
    from safetensors.torch import load_file

    directory = Path(directory)
    final = directory / LAST_CHECKPOINT
    if not (final / META).exists():
        old = directory / f".{LAST_CHECKPOINT}.old"  # killed between the two renames of save_checkpoint
        if (old / META).exists():
            os.replace(old, final)
        else:
            return None
    weights = load_file(final / WEIGHTS)
    params = trainable_parameters(model)
    if set(weights) != set(params):
        raise RuntimeError(f"checkpoint {final} does not match this model's trainable parameters")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    state = torch.load(final / STATE, weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return read_json(final / META)
