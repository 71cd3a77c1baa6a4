"""Losses, one per file; configs select one with ``_target_``."""
from embedgrid.losses.infonce import InfoNCELoss

__all__ = ["InfoNCELoss"]
