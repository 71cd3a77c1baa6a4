"""Hydra callbacks (registered under ``hydra.callbacks`` in conf/config.yaml).

``RedactSecrets``: Hydra writes ``.hydra/{config,hydra,overrides}.yaml`` itself, with every override in clear,
just before ``on_job_start``; this callback rewrites them redacted (embedgrid.secrets) at that point, and puts
the log redaction on. ``on_job_end`` redacts the job's return (config, overrides), which submitit pickles into
``.submitit/<id>/<id>_result.pkl`` and Hydra prints when a job fails. ``multirun.yaml`` is written redacted by
the sweeper (``save_redacted_yaml``). Not covered: submitit's ``<id>_submitted.pkl``, which must carry the
overrides for the job to run them -- hence secrets through the environment only.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, OmegaConf

from embedgrid.io import atomic_write
from embedgrid.logger import install_log_redaction
from embedgrid.secrets import redact, remember_secrets

log = logging.getLogger(__name__)

HYDRA_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")


def redacted_container(cfg: DictConfig | ListConfig) -> Any:
    """The config as plain data (interpolations kept as written), secrets redacted."""
    return redact(OmegaConf.to_container(cfg, resolve=False))


def save_redacted_yaml(cfg: DictConfig | ListConfig | dict | list, path: str | Path) -> None:
    data = redacted_container(cfg) if isinstance(cfg, (DictConfig, ListConfig)) else redact(cfg)
    text = OmegaConf.to_yaml(OmegaConf.create(data))

    def _write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    atomic_write(path, _write)


def redact_yaml_file(path: Path) -> None:
    save_redacted_yaml(OmegaConf.load(path), path)


def _remember_overrides(config: DictConfig) -> None:
    """Values given under secret keys on the command line are redacted wherever they show up later."""
    overrides = OmegaConf.select(config, "hydra.overrides.task", default=None)
    if overrides is not None:
        remember_secrets(OmegaConf.to_container(overrides))


class RedactSecrets(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _remember_overrides(config)
        install_log_redaction()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _remember_overrides(config)
        install_log_redaction()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        _remember_overrides(config)
        install_log_redaction()
        subdir = OmegaConf.select(config, "hydra.output_subdir")
        if subdir is None:
            return
        folder = Path(str(config.hydra.runtime.output_dir)) / str(subdir)
        for name in HYDRA_FILES:
            if (folder / name).exists():
                try:
                    redact_yaml_file(folder / name)
                except Exception as error:  # noqa: BLE001 - Hydra would swallow it; make it loud instead
                    log.error("could not redact %s (%s: %s); delete it if it holds a secret",
                              folder / name, type(error).__name__, error)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        for name in ("cfg", "hydra_cfg"):
            value = getattr(job_return, name)
            if isinstance(value, DictConfig):
                setattr(job_return, name, OmegaConf.create(redacted_container(value)))
        if job_return.overrides is not None:
            job_return.overrides = redact(list(job_return.overrides))
        if isinstance(job_return._return_value, dict):  # run_cell's outcome (its error message)
            job_return._return_value = redact(job_return._return_value)
