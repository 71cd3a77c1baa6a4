"""The grid wing: Hydra entry, sweeps, the cell (plan, run, record), the cell directory and cell identity."""
