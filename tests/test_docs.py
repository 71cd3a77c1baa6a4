"""The documentation site builds without a warning, and user docs speak of the product, not of how it was built."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT

HISTORY = re.compile(r"this stop|issue [0-9]|stop [0-9]|before issue", re.IGNORECASE)


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
                    reason="mkdocs / mkdocs-material not installed (./setup.sh installs them: the docs extra)")
def test_the_docs_site_builds_strictly(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert out.returncode == 0, out.stdout + out.stderr
    for page in ("index", "getting-started", "your-data", "slurm", "configuration", "designs", "training",
                 "evaluation", "architecture", "benchmarks", "licences"):
        assert (tmp_path / "site" / ("" if page == "index" else page) / "index.html").is_file(), page


def test_user_docs_carry_no_development_history():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    found = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in pages
             for n, line in enumerate(p.read_text().splitlines(), 1) if HISTORY.search(line)]
    assert not found, "\n".join(found)
