"""The cost of a trial's system metrics (``trainables.system_metrics``) against a digits epoch.

Measures, in one run and one thread: the mean time of one ``SystemMeter.read()`` (what each epoch
adds), and the wall time of a digits trial's epochs (``train_loop`` with the space's settings, one
thread, as a trial runs them). Prints both and their ratio (issue goal: under 1% of a trial's wall time).

    python benchmarks/system_metrics.py        # a few seconds
"""

from __future__ import annotations

import time

import torch

from search_spaces import get_space
from trainables.system_metrics import SystemMeter
from trainables.train import train_loop

READS = 2000


class Reports:
    """Stands in for ``ray.tune``: keeps the time of each report."""

    class Checkpoint:
        @staticmethod
        def from_directory(path):
            return None

    def __init__(self):
        self.times: list[float] = []

    def report(self, metrics, checkpoint=None):
        self.times.append(time.perf_counter())


def main() -> None:
    torch.set_num_threads(1)
    meter = SystemMeter(torch.device("cpu"))
    started = time.perf_counter()
    for _ in range(READS):
        meter.read()
    read_s = (time.perf_counter() - started) / READS

    space = get_space("digits")
    config = {**space.fixed, "experiment": "digits", "loss": "softmax", "optimizer": "adam", "lr": 3e-3,
              "seed": 0, "epochs": 6, "threads": 1, "checkpoint_every": 100}  # fmt: skip
    reports = Reports()
    train_loop(config, reports, None, torch.device("cpu"), {})
    epochs = [b - a for a, b in zip(reports.times, reports.times[1:])]
    epoch_s = sorted(epochs)[len(epochs) // 2]
    print("command: python benchmarks/system_metrics.py")
    print(f"one SystemMeter.read(): {read_s * 1e6:.1f} µs (mean of {READS})")
    print(f"one digits epoch (median of {len(epochs)}, one thread): {epoch_s * 1e3:.1f} ms")
    print(f"cost per epoch: {100 * read_s / epoch_s:.4f}% of the epoch (goal < 1%)")


if __name__ == "__main__":
    main()
