"""Where a cell's numbers come from: the code, the libraries that change results, the device and the inputs.

Written into ``cell.json`` under ``provenance`` (docs/identity.md); the analysis reads exactly these keys.
"""
from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from embedgrid.grid.plan import CellPlan

RESULT_LIBRARIES = ("torch", "transformers", "peft", "mteb", "sentence-transformers")
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the checkout holding embedgrid/, when run from one


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


@functools.cache
def code() -> dict:
    """``{version, git_commit, git_dirty}``; the git fields are None outside a checkout (an installed wheel)."""
    import embedgrid

    out = {"version": embedgrid.__version__, "git_commit": None, "git_dirty": None}

    def git(*args) -> str | None:
        try:
            proc = subprocess.run(["git", "-C", str(PACKAGE_ROOT), *args], capture_output=True, text=True,
                                  timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout if proc.returncode == 0 else None

    if (PACKAGE_ROOT / ".git").exists():
        commit = git("rev-parse", "HEAD")
        if commit:
            status = git("status", "--porcelain", "--untracked-files=no")
            out["git_commit"] = commit.strip()
            out["git_dirty"] = None if status is None else bool(status.strip())
    return out


def libraries() -> dict:
    return {name: _version(name) for name in RESULT_LIBRARIES}


def device(requested: str | None) -> dict:
    """``{type, name, count}``: the device kind and model the cell runs on, and how many (one per rank) it uses.
    torch is asked only once it is loaded (the plan step never loads it)."""
    torch = sys.modules.get("torch")
    kind = requested if requested and requested != "auto" else None
    count = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if torch is None:
        return {"type": kind, "name": None, "count": None}
    cuda = torch.cuda.is_available()
    kind = kind or ("cuda" if cuda else "cpu")
    if kind.startswith("cuda") and cuda:
        return {"type": "cuda", "name": torch.cuda.get_device_name(), "count": count}
    return {"type": kind.split(":")[0], "name": _cpu_name() if kind == "cpu" else kind, "count": count}


def _cpu_name() -> str:
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def model_revision(cell_inputs: dict[str, str], configured: str | None) -> str | None:
    """The base model's resolved revision: its hub commit, its local content fingerprint, or its asset."""
    if "model" in cell_inputs:
        return cell_inputs["model"]
    return configured


def provenance(plan: CellPlan) -> dict:
    cell_inputs = plan.provenance.fingerprints()
    return {
        "code": code(),
        "libraries": libraries(),
        "device": device(plan.runtime.device),
        "inputs": cell_inputs,
        "model_revision": model_revision(cell_inputs, plan.provenance.configured_revision),
        "identity_version": plan.provenance.identity_version,
    }


def _content(fingerprint) -> str | None:
    """What a fingerprint says about content: its sha256 where it has one (a package version that changed
    around the same bytes is the same input), else the whole string (a hub commit)."""
    if not isinstance(fingerprint, str):
        return None
    digest = re.search(r"sha256:[0-9a-f]{64}", fingerprint)
    return digest.group(0) if digest else fingerprint


def changed_inputs(recorded: dict, today: dict) -> list[str]:
    """One line per input whose content differs between a record and today (inputs only one side has count)."""
    return [f"{name}: recorded {recorded.get(name, '(none)')}, now {today.get(name, '(none)')}"
            for name in sorted(set(recorded) | set(today)) if _content(recorded.get(name)) != _content(today.get(name))]
