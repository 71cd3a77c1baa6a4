"""Training checkpoints in the cell directory: trainable weights (safetensors) + optimizer/scheduler/RNG state.

The state file holds only tensors and plain containers, so it loads with ``torch.load(weights_only=True)``.
All files are written to a temp directory that is renamed into place, so a kill never leaves a torn ``last``;
the one before is kept as ``prev``, the fallback when ``last`` is unreadable (a copy cut short, a bad disk).
"""
from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
from pathlib import Path

import torch

from embedgrid.io import read_json, write_errors, write_json

log = logging.getLogger(__name__)

LAST, PREV = "last", "prev"  # checkpoints/last/: the one the next launch resumes from
LAST_CHECKPOINT = LAST
LEGACY_OLD = f".{LAST}.old"  # what older versions left when killed between their two renames
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
    """Write ``last`` (the previous ``last`` becomes ``prev``). A failed write (disk full) removes its temp
    directory and raises the original error; ``last`` and ``prev`` stay as they were."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(f".{LAST}.tmp*"):  # left by a killed process (one writer per cell: the cell lock)
        shutil.rmtree(stale, ignore_errors=True)
    final, prev = directory / LAST, directory / PREV
    tmp = directory / f".{LAST}.tmp{os.getpid()}"
    try:
        tmp.mkdir()
        with write_errors(tmp / WEIGHTS):
            save_file({k: v.detach().cpu().contiguous() for k, v in trainable_parameters(model).items()},
                      tmp / WEIGHTS)
        with write_errors(tmp / STATE):
            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "rng": rng_state()}, tmp / STATE)
        write_json(tmp / META, {"step": step, **(extra or {})})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():  # killed between these renames: prev (and the complete temp dir) remain; load uses prev
        shutil.rmtree(prev, ignore_errors=True)
        os.replace(final, prev)
    os.replace(tmp, final)
    return final


def _read(path: Path) -> tuple[dict, dict, dict]:
    from safetensors.torch import load_file

    meta = read_json(path / META)
    if not isinstance(meta, dict) or not isinstance(meta.get("step"), int):
        raise ValueError(f"{META} is missing or has no integer step")
    return meta, load_file(path / WEIGHTS), torch.load(path / STATE, weights_only=True)


def load_checkpoint(directory: Path, model, optimizer, scheduler, main: bool = True) -> dict | None:
    """Restore the newest readable checkpoint (``last``, else ``prev``) into model/optimizer/scheduler/RNG.

    Returns its meta (with ``path``), or None when there is none: training starts at step 0. An unreadable
    checkpoint (truncated file, torn copy) is named in a warning and, on the main process, moved aside to
    ``<name>.corrupt`` so the next save does not rotate it into ``prev``. Nothing is applied to the model
    until all three files of a checkpoint have been read.
    """
    directory = Path(directory)
    unreadable = []
    for path in (directory / LAST, directory / PREV, directory / LEGACY_OLD):
        if not path.exists():
            continue
        try:
            meta, weights, state = _read(path)
        except Exception as error:  # noqa: BLE001 - any unreadable file: try the previous checkpoint
            unreadable.append(path)
            log.warning("checkpoint %s is unreadable (%s: %s); trying the previous one", path,
                        type(error).__name__, error)
            if main:
                aside = path.with_name(path.name.lstrip(".") + ".corrupt")
                shutil.rmtree(aside, ignore_errors=True)
                with contextlib.suppress(OSError):  # e.g. already moved by a concurrent reader
                    os.replace(path, aside)
            continue
        _apply(path, weights, state, model, optimizer, scheduler)
        if unreadable:
            log.warning("resuming from the previous checkpoint %s (step %d)", path, meta["step"])
        return {**meta, "path": str(path)}
    if unreadable:
        log.warning("no readable checkpoint in %s (%s unreadable): training restarts from step 0", directory,
                    ", ".join(str(p) for p in unreadable))
    return None


def _apply(path: Path, weights: dict, state: dict, model, optimizer, scheduler) -> None:
    params = trainable_parameters(model)
    if set(weights) != set(params):
        raise RuntimeError(f"checkpoint {path} does not match this model's trainable parameters")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
