"""Marks on a command's time line, so that a benchmark can see where its start-up goes.

With ``OVATUNE_TIMELINE=FILE`` in the environment, each :func:`mark` appends one line
``<seconds since the epoch> <phase>`` to FILE; without it, a mark costs one dictionary lookup.
``benchmarks/startup.py`` reads the file next to the MLflow store's own timestamps. Standard library
only: the first mark is taken before any heavy import.

With ``OVATUNE_PAUSE_AT=<phase>=<seconds>``, the command says so on stderr and waits there when it
reaches that mark: what lets a test send a signal in a given phase (promotion, say) every time.
"""

from __future__ import annotations

import os
import sys
import time

TIMELINE_ENV = "OVATUNE_TIMELINE"
PAUSE_ENV = "OVATUNE_PAUSE_AT"


def mark(phase: str) -> None:
    """Record that ``phase`` (a few words, no newline) ends now, when the timeline is on."""
    path = os.environ.get(TIMELINE_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as timeline:
            timeline.write(f"{time.time():.6f} {phase}\n")
    at, _, seconds = os.environ.get(PAUSE_ENV, "").rpartition("=")
    if at == phase:
        print(f"ovatune: paused at {phase} for {seconds} s ({PAUSE_ENV})", file=sys.stderr, flush=True)
        time.sleep(float(seconds))
