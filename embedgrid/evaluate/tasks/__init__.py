"""Offline MTEB tasks built from real text that registry packages ship (see README, "Evaluation data")."""
from embedgrid.evaluate.tasks.lee import LeeDocumentSTS

OFFLINE_TASKS = {cls.metadata.name: cls for cls in [LeeDocumentSTS]}
