"""Experiment loggers: W&B (offline by default) or none. Logging never kills a run. Secrets never reach either:
the W&B config and command line are redacted, and ``install_log_redaction`` redacts every log record."""
from __future__ import annotations

import logging
import sys
import traceback
from contextlib import contextmanager
from typing import Any

from embedgrid.secrets import redact, redact_argv, redact_text, remember

log = logging.getLogger(__name__)


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string is the handler's to report, not ours
        return
    record.msg, record.args = redact_text(message), None
    if record.exc_info and not record.exc_text:  # formatters reuse exc_text instead of formatting again
        record.exc_text = redact_text("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info)


def install_log_redaction() -> None:
    """Every log record is redacted when it is created, whichever logger, handler or file it goes to; idempotent.

    A record factory, not a handler filter: Hydra reconfigures logging (new handlers) for every launch and job,
    which would drop a filter, and a logger's filter misses records propagated from child loggers.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacts_secrets", False):
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _redact_record(record)
        return record

    factory.redacts_secrets = True
    logging.setLogRecordFactory(factory)


@contextmanager
def _redacted_argv():
    """W&B records ``sys.argv`` (the overrides) in the run file when it starts; let it record a redacted one."""
    argv = sys.argv
    sys.argv = redact_argv(list(argv))
    try:
        yield
    finally:
        sys.argv = argv


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
    goes on without W&B and says so once. The API key belongs in ``WANDB_API_KEY``; ``api_key`` (e.g.
    ``+logger.api_key=...``) is accepted with a warning, since a command line is visible to other users.
    """

    def __init__(self, project: str, run_id: str, name: str, group: str | None, run_config: dict, directory: str,
                 mode: str = "offline", entity: str | None = None, tags: list[str] | None = None,
                 init_timeout: float = 30.0, api_key: str | None = None):
        self.run = None
        self.run_id = run_id
        extra = {}
        if api_key:
            remember(str(api_key))
            log.warning("logger.api_key was given as an override: it is redacted from every file, but a command "
                        "line is visible to other users of the machine; export WANDB_API_KEY instead")
            extra["api_key"] = str(api_key)
        try:
            import wandb

            with _redacted_argv():
                self.run = wandb.init(project=project, entity=entity, id=run_id, name=name, group=group,
                                      config=redact(run_config), dir=directory, mode=mode, resume="allow",
                                      tags=list(tags or []), reinit="finish_previous",
                                      settings=wandb.Settings(init_timeout=init_timeout, silent=True, **extra))
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
