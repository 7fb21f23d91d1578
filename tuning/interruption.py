"""Ctrl-C and SIGTERM: during a job's ``Tuner.fit`` (:class:`Interruption`: stop cleanly once, at
once the second time; a full disk stops it the same way, :func:`stop_job`), and in the work that
follows it (:func:`stop_on_signals`: promotion, where SIGTERM used to end the process on the spot,
leaving runs RUNNING and a version half registered)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from typing import Any

from tuning.disk import DiskReserve, StorageFailure


class Stopped(BaseException):
    """SIGINT or SIGTERM arrived in a phase that :func:`stop_on_signals` guards. A BaseException, as
    KeyboardInterrupt is: library code that catches ``Exception`` (MLflow's store wraps what it
    catches in an MlflowException) lets it through to the command."""

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
    active: Interruption | None = None  # the one around the ``fit`` now running, which :func:`stop_job` stops

    def __init__(self, reserve: DiskReserve | None = None) -> None:
        self.signum: int | None = None
        self.failure: StorageFailure | None = None  # a full disk, say, that stopped the job (see tuning.disk)
        self.reserve = reserve  # given back when a failure stops the job, for the stop's own writes
        self._previous: dict[int, Any] = {}
        self._failing = threading.Lock()  # the metric writer's thread and the main thread may both fail

    def __enter__(self) -> Interruption:
        Interruption.active = self
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
        Interruption.active = None
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def fail(self, failure: StorageFailure) -> None:
        """Stop the job for ``failure`` the way a first Ctrl-C does (from any thread); the first failure is kept."""
        with self._failing:
            if self.failure is not None or self.signum is not None:
                return
            self.failure = failure
        if self.reserve is not None:
            self.reserve.release_for_stop()  # Tune's last save of its state needs a little space
        print(f"\novatune: {failure.message}: stopping; its trials keep their checkpoints for --resume", flush=True)
        if signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, None):
            os.kill(os.getpid(), signal.SIGUSR1)  # Tune stops its trials and saves its state

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None or signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None):
            self.signum = self.signum or signum
            raise KeyboardInterrupt  # the second signal, or Tune is not listening yet: stop now
        self.signum = signum
        print(f"\novatune: {signal.Signals(signum).name}: stopping; its trials are checkpointed "
              "and its state saved for --resume (Ctrl-C again stops at once)", flush=True)  # fmt: skip
        os.kill(os.getpid(), signal.SIGUSR1)


def stop_job(failure: StorageFailure) -> bool:
    """Stop the job whose ``fit`` is running in this process for ``failure`` (see
    :meth:`Interruption.fail`); False when no job is running."""
    interruption = Interruption.active
    if interruption is None:
        return False
    interruption.fail(failure)
    return True
