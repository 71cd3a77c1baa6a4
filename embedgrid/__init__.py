"""embedgrid: a Hydra grid runner for LLM-based text-embedding designs (pooling x attention).

Heavy libraries (torch, transformers, mteb) load on first use, so ``import embedgrid`` stays fast.
"""
from __future__ import annotations

__version__ = "0.1.0"

from embedgrid.grid.cellid import register_resolvers as _register_resolvers

_register_resolvers()


def load_encoder(cell_dir, device=None, **options):
    """Rebuild the trained encoder of a finished cell; ``.encode(texts)`` gives (n, d) float32, L2-normalised.

    ``options``: ``trust_remote_code`` / ``allow_checkpoint_from_disk`` opt-ins (embedgrid.model.encoder.load_encoder).
    ``cell_dir`` may also be a saved encoder's own directory (a cell's ``model/``)."""
    from embedgrid.grid.celldir import saved_encoder_dir
    from embedgrid.model.encoder import load_encoder as _load

    return _load(saved_encoder_dir(cell_dir), device=device, **options)


def __getattr__(name):
    if name in ("Encoder", "EncoderSpec", "build_encoder"):
        import embedgrid.model.encoder as module

        return getattr(module, name) if hasattr(module, name) else getattr(__import__("embedgrid.model.spec").spec, name)
    raise AttributeError(name)
