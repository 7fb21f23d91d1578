"""Marks on a command's time line, so that a benchmark can see where its start-up goes.

With ``OVATUNE_TIMELINE=FILE`` in the environment, each :func:`mark` appends one line
``<seconds since the epoch> <phase>`` to FILE; without it, a mark costs one dictionary lookup.
``benchmarks/startup.py`` reads the file next to the MLflow store's own timestamps. Standard library
only: the first mark is taken before any heavy import.
"""

from __future__ import annotations

import os
import time

TIMELINE_ENV = "OVATUNE_TIMELINE"


def mark(phase: str) -> None:
    """Record that ``phase`` (a few words, no newline) ends now, when the timeline is on."""
    path = os.environ.get(TIMELINE_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as timeline:
            timeline.write(f"{time.time():.6f} {phase}\n")
