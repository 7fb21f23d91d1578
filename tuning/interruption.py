"""Ctrl-C and SIGTERM during a job's ``Tuner.fit``: stop cleanly once, at once the second time."""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any


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
