"""Hydra discovers sweepers only inside the ``hydra_plugins`` namespace; the logic is in embedgrid/grid/sweeper.py."""
from embedgrid.grid.sweeper import GridSweeper as _GridSweeper


class GridSweeper(_GridSweeper):
    pass
