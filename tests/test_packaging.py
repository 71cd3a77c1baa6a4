"""The installed package stands alone: a non-editable install, used from outside the checkout, finds the sweeper."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

from tests.helpers import ROOT

IGNORED = {".git", "build", ".cache", ".venv", "multirun", "outputs", "__pycache__", ".slurm"}
DISCOVER = """
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
import hydra_plugins.embedgrid_sweeper.grid_sweeper as module
names = [p.__module__ + "." + p.__name__ for p in Plugins.instance().discover(Sweeper)]
print("SWEEPERS", names)
print("FROM", module.__file__)
import analysis.run, cellfiles.layout  # analysis stands on the shared cell-directory package, installed beside it
print("SHARED", cellfiles.layout.__file__)
"""


@pytest.mark.slow
def test_a_non_editable_install_finds_the_grid_sweeper_outside_the_checkout(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # the dependencies (and pip, setuptools) come from this interpreter's site-packages, offline; embedgrid
    # itself is installed into the fresh venv from a copy-free build of the checkout
    with open(os.path.join(site, "deps.pth"), "w") as handle:
        handle.write(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    source = tmp_path / "source"  # the tracked files only: no build/ left over from an earlier install
    shutil.copytree(ROOT, source, ignore=lambda d, names: [n for n in names if n in IGNORED or n.endswith(".egg-info")])
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                              "--no-index", "--target", site, str(source)], capture_output=True, text=True, env=env,
                             cwd=tmp_path, timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr
    assert not os.path.exists(os.path.join(site, "hydra_plugins", "__init__.py")), "must stay a namespace package"
    proc = subprocess.run([str(python), "-c", DISCOVER], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "hydra_plugins.embedgrid_sweeper.grid_sweeper.GridSweeper" in proc.stdout, proc.stdout
    found = proc.stdout.split("FROM ")[1].split()[0]
    assert found.startswith(site) and not found.startswith(str(ROOT)), found
    shared = proc.stdout.split("SHARED ")[1].split()[0]
    assert shared.startswith(site), shared
