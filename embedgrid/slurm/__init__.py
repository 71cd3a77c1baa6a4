"""A local one-node SLURM cluster (start/stop/status) and the pre-submit controller check."""
from embedgrid.slurm.cluster import LocalCluster, check_controller

__all__ = ["LocalCluster", "check_controller"]
