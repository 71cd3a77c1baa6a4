"""The mteb ``ModelMeta`` fields of a cell, so ``<cell>/mteb/results/.../model_meta.json`` is what mteb's
leaderboard asks of a submitted model (name, revision, sizes, licence, framework, training data)."""
from __future__ import annotations

import datetime


def cell_model_meta(cfg, encoder) -> dict:
    """Overrides for ``ModelMeta`` (name and revision are set by the caller, per cell and eval settings)."""
    card = dict(cfg.model.card or {})
    parameters = sum(p.numel() for p in encoder.parameters())
    size_bytes = sum(p.numel() * p.element_size() for p in encoder.parameters())
    return {
        "release_date": datetime.date.today().isoformat(),
        "languages": list(card.get("languages") or ["eng-Latn"]),
        "n_parameters": int(parameters),
        "memory_usage_mb": round(size_bytes / 2**20, 1),
        "license": card.get("license") or "not specified",
        "open_weights": True,
        "public_training_code": card.get("training_code"),
        "public_training_data": str(cfg.data.name),
        "framework": ["PyTorch", "Transformers", "safetensors"],
        "reference": card.get("reference"),
        "adapted_from": card.get("base_model"),
        "training_datasets": set(),  # no MTEB dataset is trained on (the offline sources are not MTEB tasks)
    }
