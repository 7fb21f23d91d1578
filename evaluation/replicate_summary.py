"""Every number of an evaluation over R replicates per loss: mean ± sd and a 95% interval.

The test metrics (accuracy, ECE, NLL, Brier) get the two-way bootstrap of ``evaluation.comparison``
(seeds and test examples); so do the differences between every pair of losses, paired over both.
AUROC, AUPRC and mean confidence per OOD set, and accuracy and ECE per shift intensity (the mean
over corruptions, per replicate), are one value per replicate: their interval is the t interval
over the seeds, clipped to [0, 1] (every one of them is a rate or a probability).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluation.comparison import Comparison, Spread, compare_losses, metric_intervals, over_seeds
from evaluation.metrics import MEASURES
from evaluation.runner import Evaluation

OOD_SCORES = ("auroc", "auprc", "mean_confidence")
UNIT = (0.0, 1.0)  # the range of every quantity with a t interval here


@dataclass
class ReplicateSummary:
    """What R replicates per loss measure.

    Attributes:
        replicates: loss -> R (the replicates that were evaluated).
        test: loss -> metric of ``MEASURES`` -> spread over seeds, interval over seeds and examples.
        ood: loss -> OOD set -> one of ``OOD_SCORES`` -> spread, t interval over seeds.
        shift: loss -> intensity (0 = clean test) -> "accuracy" | "ece" -> spread of the mean over corruptions.
        comparisons: every metric, every pair of losses, paired over seeds and examples (the
            replicate numbers every loss has).
        examples: test examples.
    """

    replicates: dict[str, int]
    test: dict[str, dict[str, Spread]]
    ood: dict[str, dict[str, dict[str, Spread]]]
    shift: dict[str, dict[int, dict[str, Spread]]]
    comparisons: list[Comparison]
    examples: int


def summarize_replicates(replicates: dict[str, dict[int, Evaluation]]) -> ReplicateSummary:
    """The summary of ``replicates`` (loss -> replicate number -> its ``Evaluation``, two or more per
    loss, all on the same test split)."""
    labels = next(iter(next(iter(replicates.values())).values())).test_labels
    test, ood, shift = {}, {}, {}
    for loss, by_number in replicates.items():
        evaluations = list(by_number.values())
        intervals = metric_intervals([ev.test_probs for ev in evaluations], labels)
        test[loss] = {
            metric: _with_interval(over_seeds([ev.test[metric] for ev in evaluations]), intervals[metric])
            for metric in MEASURES
        }
        ood[loss] = {
            name: {score: over_seeds([ev.ood[name][score] for ev in evaluations], bounds=UNIT) for score in OOD_SCORES}
            for name in evaluations[0].ood
        }
        if evaluations[0].shift:
            shift[loss] = {
                level: {
                    metric: over_seeds(
                        [np.mean([r[metric] for r in ev.shift if r["intensity"] == level]) for ev in evaluations],
                        bounds=UNIT,
                    )
                    for metric in ("accuracy", "ece")
                }
                for level in evaluations[0].shift_levels
            }
    common = sorted(set.intersection(*(set(by_number) for by_number in replicates.values())))
    paired = {loss: [by_number[n].test_probs for n in common] for loss, by_number in replicates.items()}
    comparisons = compare_losses(paired, labels) if len(common) >= 2 and len(replicates) >= 2 else []
    return ReplicateSummary({loss: len(v) for loss, v in replicates.items()}, test, ood, shift, comparisons,
                            len(labels))  # fmt: skip


def _with_interval(spread: Spread, interval) -> Spread:
    """``spread`` with the two-way bootstrap interval (seeds and examples) instead of the t interval."""
    return Spread(spread.mean, spread.sd, interval, spread.replicates)
