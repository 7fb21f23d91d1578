"""The evaluation's progress counter: one small Ray actor that every measuring task tells of each
shifted test set it has measured, and the driver reads for its progress line (``tuning.fan_out``).

A module of its own that imports nothing: an actor's worker process imports the module its class
is defined in, and ``tuning.fan_out``'s imports (torch, MLflow, Ray Tune) made this counter's process take
6.3 s and 720 MB to start, beside the tasks it counts for (measured on the 2-core machine;
``test_fan_out`` keeps it light).
"""

from __future__ import annotations


class ShiftedSetCounts:
    """A Ray actor (no CPU of its own): label -> (shifted sets measured, shifted sets in all)."""

    def __init__(self) -> None:
        self.counts: dict[str, list[int]] = {}

    def start(self, label: str, total: int) -> None:
        self.counts[label] = [0, total]

    def advance(self, label: str) -> None:
        self.counts[label][0] += 1

    def read(self) -> dict[str, list[int]]:
        return self.counts
