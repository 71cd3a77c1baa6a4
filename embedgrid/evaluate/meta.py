"""The mteb ``ModelMeta`` fields of a cell, so ``<cell>/mteb/results/.../model_meta.json`` is what mteb's
leaderboard asks of a submitted model (name, revision, sizes, licence, framework, training data)."""
from __future__ import annotations

import datetime

from embedgrid.data.fingerprint import loader_inputs


def cell_model_meta(encoder, *, card: dict, data_name: str, loader: dict, trains: bool) -> dict:
    """Overrides for ``ModelMeta`` (name and revision are set by the caller, per cell and eval settings).
    ``card``: the model's card (licence, languages, base model); ``data_name``, ``loader`` (``{_target_, ...}``)
    and ``trains``: the training data, and whether the cell trained on it."""
    card = dict(card or {})
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
        "public_training_data": str(data_name),
        "framework": ["PyTorch", "Transformers", "safetensors"],
        "reference": card.get("reference"),
        "adapted_from": card.get("base_model"),
        "training_datasets": training_datasets(loader, trains),
    }


def training_datasets(loader: dict, trains: bool) -> set[str]:
    """What the cell trained on: hub datasets as ``<id>@<commit>``, local files as ``<path> sha256:<hex>``, and,
    where WordNet is a source, the offline tasks built from WordNet text (so mteb counts them as not zero-shot).
    Empty for an untrained (zero-shot) cell."""
    from embedgrid.evaluate.tasks import OFFLINE_TASKS

    if not trains:
        return set()
    names = set()
    for source in loader_inputs(loader):
        if source.fingerprint.startswith("hf:"):
            names.add(source.fingerprint[len("hf:"):])
        elif source.source.startswith("WordNet"):
            names.add(f"WordNet 3.0 {source.fingerprint}")
            names.update(name for name, task in OFFLINE_TASKS.items() if getattr(task, "in_domain", False))
        else:
            names.add(f"{source.source} {source.fingerprint}")
    return names
