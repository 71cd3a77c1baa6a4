"""Experiment loggers: W&B (offline by default) or none. Logging never kills a run."""
from __future__ import annotations

import logging
from typing import Any

from embedgrid.secrets import redact

log = logging.getLogger(__name__)


class NullLogger:
    run_id = None

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        pass

    def summary(self, metrics: dict[str, Any]) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


class WandbLogger(NullLogger):
    """One W&B run per cell. ``id`` comes from the cell, so a resumed or requeued cell continues the same run.

    If ``wandb.init`` fails or times out (an API key with no network blocks for ~100 s by default), training
    goes on without W&B and says so once.
    """

    def __init__(self, project: str, run_id: str, name: str, group: str | None, run_config: dict, directory: str,
                 mode: str = "offline", entity: str | None = None, tags: list[str] | None = None,
                 init_timeout: float = 30.0):
        self.run = None
        self.run_id = run_id
        try:
            import wandb

            self.run = wandb.init(project=project, entity=entity, id=run_id, name=name, group=group,
                                  config=redact(run_config), dir=directory, mode=mode, resume="allow",
                                  tags=list(tags or []), reinit="finish_previous",
                                  settings=wandb.Settings(init_timeout=init_timeout, silent=True))
        except Exception as error:  # noqa: BLE001 - any W&B failure must leave training running
            log.warning("W&B disabled for this cell: %s: %s", type(error).__name__, error,
                        exc_info=log.isEnabledFor(logging.DEBUG))

    def log(self, metrics, step=None):
        if self.run is not None:
            try:
                self.run.log(metrics, step=step)
            except Exception as error:  # noqa: BLE001
                log.warning("W&B log failed: %s", error)

    def summary(self, metrics):
        if self.run is not None:
            try:
                self.run.summary.update(metrics)
            except Exception as error:  # noqa: BLE001
                log.warning("W&B summary failed: %s", error)

    def finish(self, exit_code: int = 0):
        if self.run is not None:
            try:
                self.run.finish(exit_code=exit_code)
            except Exception as error:  # noqa: BLE001
                log.warning("W&B finish failed: %s", error)
            self.run = None
