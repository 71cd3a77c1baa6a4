from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

PACKAGES = ("embedgrid", "torch", "transformers", "peft", "mteb", "sentence-transformers", "hydra-core",
            "omegaconf", "wandb", "submitit")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out
