"""Search spaces: one module per experiment, each plain data (no Ray imports).

A :class:`SearchSpace` holds everything a sweep needs to know about an experiment: the ranges the
random search samples, the trial budget per loss, the fixed settings every trial shares, the
validation metric that picks the best trial, and the resources of one trial.
``tuning.sweep.tune_domains`` is the one function that turns ``ranges`` into Ray Tune domains.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Range:
    """A continuous hyperparameter range, sampled uniformly or log-uniformly between low and high."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"empty range [{self.low}, {self.high}]")
        if self.log and self.low <= 0:
            raise ValueError(f"log range must be positive, got [{self.low}, {self.high}]")


def log_uniform(low: float, high: float) -> Range:
    return Range(low, high, log=True)


def uniform(low: float, high: float) -> Range:
    return Range(low, high, log=False)


@dataclass(frozen=True)
class SearchSpace:
    """One experiment as data.

    Attributes:
        name: the experiment's name (CLI argument, MLflow experiment name).
        description: one paragraph, shown in ``--help``-style listings and on the MLflow experiment.
        ranges: hyperparameter name -> range; names are the flat config keys (``lr``, ``l2``, ...).
        trials: random-search trials per loss (the paper's budget).
        fixed: settings shared by every trial: dataset, model, optimizer, batch size, epochs, ...
        metric: the validation metric (a key the trainable reports) that selects the best trial.
        mode: "max" or "min" for ``metric``.
        resources: what one trial needs, e.g. {"cpu": 1, "gpu": 0}; with "workers": N, the trial
            is N data-parallel Ray Train workers and "cpu"/"gpu" are per worker.
        pack_on_cpu: trials of a loss trained together as one vectorised model by default when
            trials train on CPUs (``--pack``; ``trainables.pack``), as measured to pay
            (``benchmarks/pack_throughput.py``); trials on GPUs default to 1 until measured there.
    """

    name: str
    description: str
    ranges: Mapping[str, Range]
    trials: int
    fixed: Mapping[str, Any]
    metric: str = "val_accuracy"
    mode: Literal["max", "min"] = "max"
    resources: Mapping[str, float] = field(default_factory=lambda: {"cpu": 1, "gpu": 0})
    pack_on_cpu: int = 1

    @property
    def dataset(self) -> str:
        return self.fixed["dataset"]


def _collect() -> dict[str, SearchSpace]:
    from search_spaces import cifar10, cifar100, clinc, digits, imagenet, toy2d

    modules = (digits, toy2d, cifar10, cifar100, imagenet, clinc)
    return {m.SPACE.name: m.SPACE for m in modules}


SPACES: dict[str, SearchSpace] = _collect()


def get_space(name: str) -> SearchSpace:
    """Look an experiment up by name, with an error that lists the valid names."""
    try:
        return SPACES[name]
    except KeyError:
        raise ValueError(f"unknown experiment {name!r}; choose from: {', '.join(SPACES)}") from None
