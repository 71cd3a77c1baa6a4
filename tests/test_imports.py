"""Imports point one way: no cycles, no upward imports, one home for user-facing exceptions."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import ROOT


def _loaded(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(m for m in sys.modules if m.startswith('embedgrid')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("module, forbidden", [
    ("embedgrid.model.pooling", {"embedgrid.model.encoder", "embedgrid.model.backbone", "embedgrid.grid.cell"}),
    ("embedgrid.model.pooling.sizes", {"embedgrid.model.encoder"}),
    ("embedgrid.model.spec", {"embedgrid.model.backbone", "embedgrid.model.encoder"}),
    ("embedgrid.grid.celldir", {"embedgrid.model.encoder", "embedgrid.grid.cell", "embedgrid.evaluate.run"}),
    ("embedgrid.errors", {"embedgrid.grid.cell", "embedgrid.train.loop"}),
    ("embedgrid.data.wordnet", {"embedgrid.evaluate.tasks", "embedgrid.evaluate.run"}),  # training reads no mteb
])
def test_lower_modules_do_not_import_upper_ones(module, forbidden):
    assert not _loaded(module) & forbidden


def test_user_facing_exceptions_live_in_errors_and_are_re_exported():
    import embedgrid.assets
    import embedgrid.grid.cell
    import embedgrid.errors as errors
    import embedgrid.slurm
    import embedgrid.grid.sweeper
    import embedgrid.train.distributed
    import embedgrid.train.loop

    assert embedgrid.grid.cell.CellConflict is errors.CellConflict and embedgrid.grid.cell.CellBusy is errors.CellBusy
    assert embedgrid.train.loop.Preempted is errors.Preempted and embedgrid.train.loop.NonFiniteLoss is errors.NonFiniteLoss
    assert embedgrid.train.distributed.RankZeroFailed is errors.RankZeroFailed
    assert embedgrid.assets.MissingAsset is errors.MissingAsset and embedgrid.slurm.SlurmError is errors.SlurmError
    assert embedgrid.grid.sweeper.GridFailed is errors.GridFailed
    defined = [p for p in (ROOT / "embedgrid").rglob("*.py") if p.name != "errors.py"
               and any(line.startswith("class ") and ("Error)" in line or "RuntimeError)" in line)
                       for line in p.read_text().splitlines())]
    assert not defined, f"exceptions defined outside embedgrid/errors.py: {defined}"


@pytest.mark.parametrize("package, forbidden", [("pooling", ("embedgrid.model.encoder", "embedgrid.model.backbone")),
                                                ("spec.py", ("embedgrid.model.backbone", "embedgrid.model.encoder"))])
def test_no_lazy_upward_imports_either(package, forbidden):
    """Imports inside functions count too: the pooling package builds its own heads (pooling/build.py)."""
    path = ROOT / "embedgrid" / "model" / package
    for source in ([path] if path.is_file() else sorted(path.rglob("*.py"))):
        for line in source.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")):
                assert not any(stripped.split()[1].startswith(f) for f in forbidden), (source, line)
