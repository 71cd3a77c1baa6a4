"""SLURM preemption / requeue: SIGTERM and SIGUSR1 ask training to checkpoint at the end of the current step.

Usage: ``with StopSignals() as stop: fit(..., should_stop=stop)``. The handlers only set a flag (the step in
flight finishes, a checkpoint is written, ``Preempted`` is raised); the previous handlers come back on exit.
SIGUSR2 is left to submitit, which uses it for its own timeout/requeue handling.
"""
from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopSignals:
    def __init__(self, signals=STOP_SIGNALS):
        self.signals = tuple(signals)
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __call__(self) -> bool:
        return self.received is not None

    def _handle(self, signum, frame):
        if self.received is None:
            log.warning("received %s: checkpointing after the current step, then exiting",
                        signal.Signals(signum).name)
        self.received = signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():  # signal handlers only work there
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
