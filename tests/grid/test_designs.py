"""One design table (cellfiles.designs): the design= presets, the grid's labels and the analysis's numbers agree."""
from __future__ import annotations

from analysis import designs as analysis_designs
from analysis import plan as analysis_plan
from cellfiles.designs import PAPER_TABLE
from embedgrid.grid import designs as grid_designs
from tests.helpers import ROOT

CONF = ROOT / "conf"


def test_every_design_preset_is_a_row_of_the_table_and_none_is_stale():
    """A conf/design/*.yaml added by hand, or one that differs from the table, fails here: add the design to
    cellfiles/designs.py and run ``python -m embedgrid.grid.designs``."""
    presets = {path.stem: path.read_text() for path in (CONF / "design").glob("*.yaml")}
    assert sorted(presets) == sorted(d.name for d in PAPER_TABLE), "conf/design/ and cellfiles.designs differ"
    for design in PAPER_TABLE:
        assert presets[design.name] == grid_designs.preset_yaml(design), f"conf/design/{design.name}.yaml is stale"


def test_the_table_is_well_formed_and_names_existing_presets():
    assert [d.number for d in PAPER_TABLE] == [1, 2, 3, 4, 5]
    assert len({d.name for d in PAPER_TABLE}) == len({(d.pooling, d.attention) for d in PAPER_TABLE}) == 5
    for design in PAPER_TABLE:
        assert (CONF / "pooling" / f"{design.pooling}.yaml").is_file(), design
        assert (CONF / "attention" / f"{design.attention}.yaml").is_file(), design


def test_the_grid_and_the_analysis_number_the_designs_alike():
    grid = {pair: number for pair, (number, _) in grid_designs.PAPER_DESIGNS.items()}
    assert grid == analysis_designs.PAPER_DESIGNS
    assert analysis_plan.PAPER_DESIGNS == sorted(grid, key=grid.get)
    assert analysis_designs.DEFAULT_BASELINE == next(pair for pair, number in grid.items() if number == 1)
    for design in PAPER_TABLE:
        assert grid_designs.design_label(design.pooling, design.attention) == f"{design.number} {design.name}"
        assert analysis_designs.Design("m", design.pooling, design.attention).paper_number == design.number


def test_the_generator_writes_what_the_check_expects(tmp_path):
    written = grid_designs.write_presets(tmp_path)
    assert sorted(p.name for p in written) == sorted(p.name for p in (CONF / "design").glob("*.yaml"))
    for path in written:
        assert path.read_text() == (CONF / "design" / path.name).read_text()
