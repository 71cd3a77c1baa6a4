"""Build a pooling head from an exported spec: embedgrid's own pooling classes only (a config on disk is data)."""
from __future__ import annotations

from torch import nn


def build_head(pooling: dict, *, hidden_size: int, num_layers: int, is_causal: bool,
               backbone_num_heads: int | None) -> nn.Module:
    import embedgrid.pooling as pooling_package

    target = str(pooling.get("_target_", ""))
    prefix = "embedgrid.pooling."
    name = target[len(prefix):] if target.startswith(prefix) else ""
    cls = getattr(pooling_package, name, None) if name and "." not in name else None
    if not (isinstance(cls, type) and issubclass(cls, pooling_package.Pooling)):
        valid = sorted(n for n in dir(pooling_package) if isinstance(getattr(pooling_package, n), type)
                       and issubclass(getattr(pooling_package, n), pooling_package.Pooling))
        raise ValueError(f"pooling target {target!r} is not one of embedgrid's pooling classes; valid: "
                         f"{[prefix + n for n in valid]}")
    kwargs = {k: v for k, v in pooling.items() if k != "_target_"}
    return cls(hidden_size=hidden_size, num_layers=num_layers, is_causal=is_causal,
               backbone_num_heads=backbone_num_heads, **kwargs)
