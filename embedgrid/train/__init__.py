"""Contrastive training: loop, checkpoints, batch order."""
