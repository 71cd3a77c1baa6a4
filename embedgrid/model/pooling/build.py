"""Pooling heads from config: an allowlisted registry of embedgrid's own classes, keyword checks, the builder.

A ``head`` node is ``{"_target_": "embedgrid.model.pooling.<Class>", **kwargs}``. Only classes exported by
``embedgrid.model.pooling`` that subclass ``Pooling`` can be named (a config or a saved ``encoder.json`` never imports
arbitrary code); a new head is covered as soon as ``embedgrid/model/pooling/__init__.py`` exports it. The sizes
(``hidden_size``, ``num_layers``, ``is_causal``, ``backbone_num_heads``) come from the backbone, never the config.
"""
from __future__ import annotations

import inspect
from types import SimpleNamespace

from embedgrid.model.attention import Attention
from embedgrid.errors import ConfigError
from embedgrid.model.pooling.base import Pooling

LEGACY_PREFIX = "embedgrid.pooling."  # the heads' names before the model wing; saved encoders and identities use it
SIZE_ARGUMENTS = ("hidden_size", "num_layers", "is_causal", "backbone_num_heads")


def pooling_registry() -> dict[str, type[Pooling]]:
    """``_target_`` -> class, for every head ``embedgrid.model.pooling`` exports (short and full module path).

    Encoders saved before the model wing existed name their head ``embedgrid.pooling.<Class>``: still accepted."""
    import embedgrid.model.pooling as package

    registry = {}
    for cls in vars(package).values():
        if isinstance(cls, type) and issubclass(cls, Pooling) and cls is not Pooling \
                and cls.__module__.startswith("embedgrid.model.pooling."):
            registry[f"embedgrid.model.pooling.{cls.__name__}"] = cls
            registry[f"{LEGACY_PREFIX}{cls.__name__}"] = cls
            registry[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return registry


def _valid_targets() -> str:
    return ", ".join(sorted(t for t in pooling_registry() if t.count(".") == 3 and t.startswith("embedgrid.model.")))


def pooling_class(head: dict, key: str = "pooling.head") -> type[Pooling]:
    if not isinstance(head, dict) or "_target_" not in head:
        raise ConfigError(f"{key} needs a _target_ (a class in embedgrid.model.pooling); got {head!r}; "
                          f"valid: {_valid_targets()}")
    target = head["_target_"]
    registry = pooling_registry()
    if target not in registry:
        from embedgrid.model.pooling import POOLINGS

        designs = ", ".join(f"{name} ({f'embedgrid.model.pooling.{c.__name__}'})" for name, c in POOLINGS.items())
        raise ConfigError(f"unknown pooling class {key}._target_={target!r}; valid: {_valid_targets()} "
                          f"(designs: {designs})")
    return registry[target]


def check_pooling_kwargs(head: dict, key: str = "pooling.head") -> type[Pooling]:
    """The head's keyword arguments against its class's ``__init__``: unknown, size-owned or missing ones fail."""
    cls = pooling_class(head, key)
    params = inspect.signature(cls.__init__).parameters
    accepted = [n for n, p in params.items() if n != "self" and n not in SIZE_ARGUMENTS
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    given = [k for k in head if k != "_target_"]
    for name in given:
        if name in SIZE_ARGUMENTS:
            raise ConfigError(f"{key}.{name} is taken from the backbone config, not the pooling config; remove it")
        if name not in accepted:
            raise ConfigError(f"{key}.{name}={head[name]!r}: {cls.__name__} takes no such argument; valid: "
                              f"{', '.join(accepted) or '(none)'}")
    missing = [n for n in accepted if params[n].default is inspect.Parameter.empty and n not in head]
    if missing:
        raise ConfigError(f"{key} misses {', '.join(missing)} required by {cls.__name__}")
    return cls


def build_pooling(head: dict, backbone_config, attention: str = "causal") -> Pooling:
    """The head named by ``head["_target_"]``, sized from the backbone config."""
    cls = check_pooling_kwargs(head)
    kwargs = {k: v for k, v in head.items() if k != "_target_"}
    return cls(hidden_size=backbone_config.hidden_size, num_layers=backbone_config.num_hidden_layers,
               is_causal=Attention(attention).is_causal,
               backbone_num_heads=getattr(backbone_config, "num_attention_heads", None), **kwargs)


def check_pooling(head: dict, attention: str, backbone_shape=None) -> None:
    """Validate a head before any model loads: its keywords, and, when the backbone's shape is known without
    loading it (``backbone_shape``: hidden_size, num_hidden_layers, num_attention_heads), the class's own checks
    by building it on the meta device (no memory, no weights)."""
    check_pooling_kwargs(head)
    if backbone_shape is None:
        return
    import torch

    try:
        with torch.device("meta"):
            build_pooling(head, backbone_shape, attention)
    except ConfigError:
        raise
    except (ValueError, TypeError) as error:
        raise ConfigError(f"pooling.head {head}: {error}") from None


def shape(hidden_size: int, num_layers: int, num_heads: int | None):
    return SimpleNamespace(hidden_size=hidden_size, num_hidden_layers=num_layers, num_attention_heads=num_heads)
