"""One progress line for long work, drawn by the driver.

On a terminal the line is rewritten in place; in a log (CI, ``ovatune submit``, a pipe) it is
printed as a plain line at most every ``LOG_EVERY_S`` seconds, so a log shows progress without
thousands of carriage returns. Work running in Ray tasks reports to the driver (see
``tuning.fan_out``), never to the terminal itself: nothing interleaves.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from ray.tune import Callback, ProgressReporter

LOG_EVERY_S = 15.0
# Tune asks its reporter after every step of its loop (5 300 steps in a 400-trial sweep), and each
# report describes every trial: on each step that cost grew with the sweep (20 of the driver's 182 CPU
# seconds at 400 trials under cProfile, ``benchmarks/scale.py --profile``). Twice a second is enough.
REPORT_EVERY_S = 0.5
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

    def seconds(self) -> float:
        """Seconds since the line was made."""
        return time.monotonic() - self.started

    def elapsed(self) -> str:
        """``seconds()`` as ``12 s`` or ``3 min 05 s``."""
        seconds = int(self.seconds())
        return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"

    def update(self, text: str) -> None:
        if self.interactive:  # one terminal row; a log keeps the whole line
            text = text[:WIDTH]
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


class SweepProgress(ProgressReporter):
    """A Ray Tune progress reporter drawing one ``ProgressLine``: per loss the trials done of its
    trials and the best ``metric`` so far, then time spent and left (estimated from the trials done).

    ``softmax 3/8 .986 · dm 2/8 .993 · ova 1/8 .993 · ova_dm 0/8 · 1 min 05 s, ~2 min left``

    A header line says what the numbers are (once, before the first report).
    """

    def __init__(self, metric: str | None, mode: str, per_loss: int, line: ProgressLine | None = None):
        self.metric, self.mode, self.per_loss = metric, mode, per_loss
        self.line = line or ProgressLine()
        self.total = 0
        self._introduced = False
        self._reported = -float("inf")  # time.monotonic() of the last report

    # Tuner pickles its reporter with the experiment (--resume restores it): the terminal stays behind
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "line"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, line=ProgressLine(), _introduced=False, _reported=-float("inf"))

    # Ray Tune's ProgressReporter interface
    def setup(self, start_time=None, total_samples=None, metric=None, mode=None, **kwargs) -> None:
        self.total = total_samples or 0

    def should_report(self, trials, done: bool = False) -> bool:
        if done or time.monotonic() - self._reported >= REPORT_EVERY_S:
            self._reported = time.monotonic()
            return True
        return False

    def report(self, trials, done: bool, *sys_info) -> None:
        if not self._introduced:
            best = f" and the best {self.metric} so far" if self.metric else ""
            print(f"progress per loss: trials done/all{best}; --verbose shows Ray Tune's table",
                  file=self.line.stream, flush=True)  # fmt: skip
            self._introduced = True
        text = self.describe(trials)
        self.line.close(text) if done else self.line.update(text)

    def describe(self, trials) -> str:
        from trainables.trial_config import upgraded
        from tuning.packs import members_of

        trials = [member for trial in trials for member in members_of(trial)]  # a pack's trials, each counted
        by_loss: dict[str, list] = {}
        for trial in trials:
            by_loss.setdefault(upgraded(trial.config).get("loss", "?"), []).append(trial)
        per_loss = []
        for loss, of_loss in by_loss.items():
            done = sum(trial.status in ("TERMINATED", "ERROR") for trial in of_loss)
            values = [(t.last_result or {}).get(self.metric) for t in of_loss] if self.metric else []
            values = [v for v in values if isinstance(v, (int, float)) and v == v]
            best = (max(values) if self.mode == "max" else min(values)) if values else None
            per_loss.append(f"{loss} {done}/{self.per_loss}" + (f" {_short(best)}" if best is not None else ""))
        finished = sum(trial.status in ("TERMINATED", "ERROR") for trial in trials)
        total = max(self.total, len(trials), self.per_loss * len(by_loss))  # Tune's total counts packs
        spent = self.line.seconds()
        left = f", ~{_duration(spent / finished * (total - finished))} left" if 0 < finished < total else ""
        return " · ".join([*per_loss, f"{self.line.elapsed()}{left}"])


def _short(value: float) -> str:
    """``.986`` for a rate, ``0.0573`` for a small loss, 3 significant digits either way."""
    text = f"{value:.3g}" if abs(value) < 0.1 or abs(value) >= 1 else f"{value:.3f}"
    return text.removeprefix("0") if text.startswith("0.") and abs(value) >= 0.1 else text


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min"


class TrialRetries(Callback):
    """One line when Ray Tune starts a failed trial again from its last checkpoint (a lost node,
    say), and when a trial has failed more often than it may: instead of Ray's traceback for a lost
    node, which is not the trial's fault (``tuning.cluster.quiet_lost_nodes``).

    ``ovatune: softmax-trial-004 lost its node; it goes on from its last checkpoint on another
    (failure 1 of the 2 it may have)``
    """

    def __init__(self, max_failures: int):
        self.max_failures = max_failures

    def setup(self, **info) -> None:
        from tuning.cluster import quiet_lost_nodes

        quiet_lost_nodes()

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        what = "lost its node" if self._lost_node(trial) else "failed (Ray's report above)"
        _note(f"ovatune: {run_names(trial)} {what}; it goes on from its last checkpoint on another "
              f"{'node' if 'node' in what else 'worker'} (failure {trial.num_failures} of the "
              f"{self.max_failures} it may have)")  # fmt: skip

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        if self._lost_node(trial):  # Ray's own report of it was left out
            _note(f"ovatune: {run_names(trial)} lost its node once more than the {self.max_failures} times "
                  f"it may, and failed; see {trial.path}")  # fmt: skip

    @staticmethod
    def _lost_node(trial) -> bool:
        """Whether the trial's last failure (the end of its local error file, which Tune writes
        before it tells the callbacks; the copy in storage follows later) was a lost node."""
        from tuning.cluster import lost_node

        try:
            return lost_node(Path(trial.error_file).read_text().rsplit("Failure # ", 1)[-1])
        except (OSError, TypeError):  # no error file: say nothing more than Ray did
            return False


def run_names(trial) -> str:
    """A Tune trial's MLflow run names: ``softmax-trial-004``, or each member of a pack."""
    from trainables.trial_config import upgraded
    from tuning.packs import members_of

    return ", ".join(f"{upgraded(m.config).get('loss', '?')}-trial-{int(m.config.get('trial_number', 0)):03d}"
                     for m in members_of(trial))  # fmt: skip


def _note(text: str) -> None:
    """A line of its own under the progress line (which a terminal shows unfinished)."""
    print(("\n" if sys.stdout.isatty() else "") + text, flush=True)
