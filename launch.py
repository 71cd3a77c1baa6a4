"""Entry point: `python launch.py [overrides]` runs one grid cell; `python launch.py -m a=x,y b=p,q` a sweep."""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

import embedgrid  # noqa: F401  (registers the ${cell_name:} resolver used by hydra.run/sweep dirs)
from embedgrid.grid.launcher import run_cell


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig):
    return run_cell(cfg)


if __name__ == "__main__":
    main()
