"""One progress line for long work, drawn by the driver.

On a terminal the line is rewritten in place; in a log (CI, ``ovatune submit``, a pipe) it is
printed as a plain line at most every ``LOG_EVERY_S`` seconds, so a log shows progress without
thousands of carriage returns. Work running in Ray tasks reports to the driver (see
``tuning.fan_out``), never to the terminal itself: nothing interleaves.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

LOG_EVERY_S = 15.0
WIDTH = 79  # an 80-column terminal, the cursor's cell left free


class ProgressLine:
    """``update(text)`` as often as you like, ``close(text)`` once at the end.

    Args:
        stream: where to draw (default stdout).
        log_every_s: the shortest interval between two plain lines when ``stream`` is not a terminal.
    """

    def __init__(self, stream: TextIO | None = None, log_every_s: float = LOG_EVERY_S):
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty()
        self.log_every_s = log_every_s
        self.started = time.monotonic()
        self._last_logged = -float("inf")
        self._last_text = ""

    def elapsed(self) -> str:
        """Seconds since the line was made, as ``12 s`` or ``3 min 05 s``."""
        seconds = int(time.monotonic() - self.started)
        return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"

    def update(self, text: str) -> None:
        text = text[:WIDTH]
        if self.interactive:
            self.stream.write("\r" + text.ljust(len(self._last_text)))
            self.stream.flush()
        elif text != self._last_text and time.monotonic() - self._last_logged >= self.log_every_s:
            self.stream.write(text + "\n")
            self.stream.flush()
            self._last_logged = time.monotonic()
        self._last_text = text

    def close(self, text: str) -> None:
        """The final state, always printed, on its own line."""
        if self.interactive:
            self.stream.write("\r" + text[:WIDTH].ljust(len(self._last_text)) + "\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
