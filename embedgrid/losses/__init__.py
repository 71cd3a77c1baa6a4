"""Losses, one per file; the training loop uses InfoNCELoss (train.temperature, train.symmetric_loss), or
MatryoshkaInfoNCELoss with train.matryoshka_dims, and masks identical-text candidates with same_text_mask
(train.false_negative_mask)."""
from embedgrid.losses.false_negatives import same_text_mask
from embedgrid.losses.infonce import InfoNCELoss
from embedgrid.losses.matryoshka import MatryoshkaInfoNCELoss

__all__ = ["InfoNCELoss", "MatryoshkaInfoNCELoss", "same_text_mask"]
