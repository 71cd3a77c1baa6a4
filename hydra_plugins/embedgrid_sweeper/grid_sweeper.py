"""Hydra discovers sweepers only inside the ``hydra_plugins`` namespace; the logic is in embedgrid/sweeper.py."""
from embedgrid.sweeper import GridSweeper as _GridSweeper


class GridSweeper(_GridSweeper):
    pass
