"""Training data sources; each ``conf/data/*.yaml`` names one loader with ``_target_``."""
from embedgrid.data.rows import Row

__all__ = ["Row"]
