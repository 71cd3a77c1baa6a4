"""docs/configuration.md is generated from the typed schema and conf/: it must match what the generator prints."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

from tests.helpers import ROOT

PAGE = ROOT / "docs" / "configuration.md"


def test_the_committed_configuration_reference_is_up_to_date():
    out = subprocess.run([sys.executable, "-m", "embedgrid.grid.reference"], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert PAGE.read_text() == out, ("docs/configuration.md is stale: regenerate it with "
                                     "`python -m embedgrid.grid.reference > docs/configuration.md`")


def test_the_reference_names_every_key_of_every_group_and_every_preset():
    from embedgrid.grid.reference import render
    from embedgrid.grid.schema import GridSchema

    page = render()
    for top in dataclasses.fields(GridSchema):
        default = top.default_factory() if top.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            for field in dataclasses.fields(default):
                assert f"`{top.name}.{field.name}`" in page, f"{top.name}.{field.name} missing"
        else:
            assert f"`{top.name}`" in page, f"{top.name} missing"
    for preset in (ROOT / "conf").rglob("*.yaml"):
        group = str(preset.parent.relative_to(ROOT / "conf"))
        if preset.name == "config.yaml" or group == "hydra/job_logging":
            continue
        assert f"| `{preset.stem}` |" in page.split(f"`{group}=`", 1)[1], f"{group}={preset.stem} missing"
