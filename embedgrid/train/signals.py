"""Preemption / timeout: SIGTERM, SIGUSR1 and SIGUSR2 ask training to checkpoint at the end of the current step.

Usage: ``with StopSignals() as stop: fit(..., should_stop=stop)``. The handlers only set a flag (the step in
flight finishes, a checkpoint is written, ``Preempted`` is raised, the cell is recorded ``partial``); the
previous handlers come back on exit.

SIGUSR2 is submitit's timeout signal: its own handler (submitit.core.job_environment.SignalHandler) requeues the
job and exits at once, which used to lose every step since the last checkpoint and record the cell ``failed``.
Here that handler is chained, not replaced: on exit with ``Preempted`` it is attached to the exception as
``hand_over``, and the cell calls it once ``cell.json`` says ``partial`` (``hand_over(error)``); if training
finished anyway, it runs on exit. In a plain run (no handler before ours) SIGUSR2 only stops training.
"""
from __future__ import annotations

import functools
import logging
import signal
import threading

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
CHAINED = (signal.SIGUSR2,)  # signals whose previous (Python) handler still runs after the checkpoint


class StopSignals:
    def __init__(self, signals=STOP_SIGNALS):
        self.signals = tuple(signals)
        self.received: int | None = None
        self.all_received: list[int] = []
        self._previous: dict[int, object] = {}

    def __call__(self) -> bool:
        return self.received is not None

    def _handle(self, signum, frame):
        if self.received is None:
            log.warning("received %s: checkpointing after the current step, then exiting",
                        signal.Signals(signum).name)
        self.received = signum
        if signum not in self.all_received:
            self.all_received.append(signum)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():  # signal handlers only work there
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _chained(self):
        """The previous handler of a received chained signal, bound to it; None in a plain run."""
        for sig in self.all_received:
            previous = self._previous.get(sig)
            if sig in CHAINED and callable(previous):
                return functools.partial(previous, sig, None)
        return None

    def __exit__(self, exc_type, exc, tb) -> None:
        chained = self._chained()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        if chained is None:
            return
        from embedgrid.errors import Preempted

        if isinstance(exc, Preempted):
            exc.hand_over = chained  # run by the cell after it recorded `partial`
        elif exc is None:
            log.warning("training finished after the stop signal; handing over to the job's own handler")
            chained()


class StopNow:
    """Outside training (evaluation, saving): SIGTERM raises Preempted where the program is, so the cell records
    ``partial`` (by default the process would die with ``cell.json`` still saying ``running``). Finished
    evaluation tasks are in the mteb cache; the next launch resumes at the next one."""

    def __init__(self, signals=(signal.SIGTERM,), during: str = "evaluation"):
        self.signals, self.during = tuple(signals), during
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame):
        from embedgrid.errors import Preempted

        raise Preempted(f"received {signal.Signals(signum).name} during {self.during}; finished work is kept and "
                        "the next launch resumes")

    def __enter__(self) -> "StopNow":
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def hand_over(error: BaseException) -> None:
    """Run the chained handler attached by StopSignals (submitit: requeue, then exit), if any."""
    chained = getattr(error, "hand_over", None)
    if chained is not None:
        log.warning("handing over to the job's own signal handler (submitit: requeue, then exit)")
        chained()
