"""Ctrl-C and SIGTERM: during a job's ``Tuner.fit`` (:class:`Interruption`: stop cleanly once, at
once the second time), and in the work that follows it (:func:`stop_on_signals`: promotion, where
SIGTERM used to end the process on the spot, leaving runs RUNNING and a version half registered)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from typing import Any


class Stopped(Exception):
    """SIGINT or SIGTERM arrived in a phase that :func:`stop_on_signals` guards."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def stop_on_signals():
    """While active, SIGINT and SIGTERM raise :class:`Stopped` where the main thread is, so that what
    it was doing is undone or closed (``finally`` blocks, ``except`` clauses) and the caller can say
    what was done. Elsewhere than the main thread: nothing (signals reach the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame) -> None:
        raise Stopped(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _quiet_interruption(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    quiet = ("Tuner.restore", "Stop signal received", "Trials did not complete", "Failed to fetch metrics")
    return not any(text in message for text in quiet)


class Interruption:
    """Ctrl-C (SIGINT) or SIGTERM during ``Tuner.fit``: stop cleanly once, at once the second time.

    The first signal asks Ray Tune to stop the way its own Ctrl-C handling does (SIGUSR1 is the
    signal Tune always listens to): trials stop, and the experiment state and the trials'
    checkpoints are saved, so ``--resume`` continues exactly. A second signal raises
    ``KeyboardInterrupt`` out of ``fit``: what was logged stays logged. ``signum`` tells the caller
    that the job did not finish (and which signal stopped it), so nothing half-trained is promoted.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Interruption:
        if threading.current_thread() is not threading.main_thread():
            return self  # signals reach the main thread only: a job run from a thread is stopped by its caller
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # this class is the handler
        # Tune's own words on stopping name its Python API (Tuner.restore) and its stop signal;
        # ovatune prints its own, with the command that resumes
        # (and the trials it never started have no results to fetch)
        for logger in ("ray.tune.tune", "ray.tune.analysis.experiment_analysis"):
            logging.getLogger(logger).addFilter(_quiet_interruption)
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None or signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None):
            self.signum = self.signum or signum
            raise KeyboardInterrupt  # the second signal, or Tune is not listening yet: stop now
        self.signum = signum
        print(f"\novatune: {signal.Signals(signum).name}: stopping; its trials are checkpointed "
              "and its state saved for --resume (Ctrl-C again stops at once)", flush=True)  # fmt: skip
        os.kill(os.getpid(), signal.SIGUSR1)
