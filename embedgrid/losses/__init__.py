"""Losses, one per file; the training loop uses InfoNCELoss (train.temperature, train.symmetric_loss)."""
from embedgrid.losses.infonce import InfoNCELoss

__all__ = ["InfoNCELoss"]
