"""What a trial reports about its validation split each epoch, and which way is better for each.

Every key of ``SELECTION_METRICS`` is reported by every trial (``trainables.train``), so any of them
can select the best trial: ``ovatune sweep --metric`` (default: the search space's ``metric``)
drives the ASHA scheduler, promotion and the champion comparison. A diverged trial reports NaN for
all of them, and a trial whose selection metric is not finite is never the best.
"""

from __future__ import annotations

from dataclasses import dataclass

from evaluation.metrics import MEASURES


@dataclass(frozen=True)
class SelectionMetric:
    """One validation metric a trial reports.

    Attributes:
        measure: the key of ``evaluation.metrics.MEASURES`` (and of ``classification_metrics``) it
            reports, on the validation split.
        meaning: one line for ``--help``.
    """

    measure: str
    meaning: str

    @property
    def mode(self) -> str:
        """ "max" when higher is better, else "min" (Ray Tune's and Optuna's words)."""
        return "max" if MEASURES[self.measure].higher_is_better else "min"


SELECTION_METRICS: dict[str, SelectionMetric] = {
    "val_accuracy": SelectionMetric("accuracy", "validation accuracy (higher is better)"),
    "val_nll": SelectionMetric("nll", "validation negative log-likelihood (lower is better)"),
    "val_ece": SelectionMetric("ece", "validation expected calibration error, 15 bins (lower is better)"),
    "val_brier": SelectionMetric("brier", "validation Brier score (lower is better)"),
}


def get_selection_metric(name: str) -> SelectionMetric:
    """The row of ``SELECTION_METRICS`` for ``name``.

    Raises:
        ValueError: no such metric; the message lists those there are.
    """
    if name not in SELECTION_METRICS:
        raise ValueError(f"unknown metric {name!r}; choose from: {', '.join(SELECTION_METRICS)}")
    return SELECTION_METRICS[name]


# Reported with a resumed trial's first result: the JSON list of every earlier epoch's numeric
# metrics, from its checkpoint. The driver logs from it the epochs its MLflow run lacks (their
# writes failed on a full disk, or a killed driver never made them); nothing else reads it.
REPLAY_KEY = "replayed_history"
