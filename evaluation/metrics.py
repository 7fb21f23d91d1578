"""Calibration, likelihood and OOD metrics over predicted probabilities (DESIGN §4).

All functions take ``probs`` (N, K) — the loss's evaluation probabilities, which for the one-vs-all
losses need not sum to one — and integer ``labels`` (N,). Confidence is max_k p_k and the
prediction argmax_k p_k for every loss. Probabilities that are NaN or infinite are refused
(:class:`NonFiniteProbabilities`): no metric of them means anything, and treating them as
anything else (uniform, zero) would report a broken model as a merely bad one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ECE_BINS = 15


@dataclass(frozen=True)
class Measure:
    """One measure of a labelled set that the losses are compared on.

    Attributes:
        title: as the report's tables and findings name it.
        higher_is_better: which way is better.
        chance: K classes -> the measure of a model that learned nothing (the uniform prediction
            1/K, on balanced classes); None where that is no baseline (the uniform prediction is
            perfectly calibrated: ECE 0).
    """

    title: str
    higher_is_better: bool
    chance: Callable[[int], float] | None = None


# The measures of ``classification_metrics`` the report compares between the losses, in its order;
# a trial's validation metrics (``trainables.trial_metrics``) are these on the validation split.
MEASURES = {
    "accuracy": Measure("accuracy", higher_is_better=True, chance=lambda k: 1.0 / k),
    "ece": Measure("ECE", higher_is_better=False),
    "nll": Measure("NLL", higher_is_better=False, chance=math.log),  # −log(1/K)
    "brier": Measure("Brier", higher_is_better=False, chance=lambda k: 1.0 - 1.0 / k),  # (1−1/K)² + (K−1)/K²
}
_TINY = 1e-12


class NonFiniteProbabilities(ValueError):
    """Probabilities that contain NaN or ±inf."""


def require_finite(probs: np.ndarray, what: str = "the probabilities") -> np.ndarray:
    """``probs`` as an array, or :class:`NonFiniteProbabilities` saying how many rows of ``what`` are not finite."""
    probs = np.asarray(probs)
    bad = ~np.isfinite(probs).all(axis=1)
    if bad.any():
        raise NonFiniteProbabilities(f"{int(bad.sum())} of {len(probs)} rows of {what} are NaN or infinite")
    return probs


def confidence_and_prediction(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """max_k p_k and argmax_k p_k, each (N,)."""
    probs = require_finite(probs)
    return probs.max(axis=1), probs.argmax(axis=1)


def renormalise(probs: np.ndarray) -> np.ndarray:
    """p / Σ_k p_k in float64, for NLL and Brier, for any positive sum however small (far from every
    class centre one-vs-all DM's probabilities sum to 1e-13 and less); a row of zeros is uniform."""
    probs = require_finite(probs).astype(np.float64)
    total = probs.sum(axis=1, keepdims=True)  # (N, 1)
    uniform = np.full_like(probs, 1.0 / probs.shape[1])
    return np.divide(probs, total, out=uniform, where=total > 0)


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of argmax predictions equal to the label."""
    return float(np.mean(confidence_and_prediction(probs)[1] == np.asarray(labels)))


def calibration_bins(confidence: np.ndarray, n_bins: int = ECE_BINS) -> np.ndarray:
    """Equal-width bin index 0..n_bins−1 of each confidence on [0, 1].

    Bin b holds [b/n, (b+1)/n); a confidence of exactly 1.0 goes to the last bin rather than to a
    phantom bin n (the torchmetrics bucketize edge case DESIGN §4 warns about).
    """
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.clip(np.searchsorted(edges[1:-1], confidence, side="right"), 0, n_bins - 1)


@dataclass
class ReliabilityBins:
    """Per-bin statistics of a reliability diagram: counts, mean confidence and accuracy (n_bins,)."""

    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray


def reliability(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> ReliabilityBins:
    """Mean confidence and accuracy per equal-width confidence bin (empty bins: NaN)."""
    confidence, prediction = confidence_and_prediction(probs)
    correct = (prediction == np.asarray(labels)).astype(np.float64)
    bins = calibration_bins(confidence, n_bins)
    counts = np.bincount(bins, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(bins, weights=confidence, minlength=n_bins) / counts
        mean_acc = np.bincount(bins, weights=correct, minlength=n_bins) / counts
    return ReliabilityBins(counts, mean_conf, mean_acc)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Top-label ECE: Σ_b (n_b / N) |acc_b − conf_b| over ``n_bins`` equal-width bins."""
    bins = reliability(probs, labels, n_bins)
    filled = bins.counts > 0
    weights = bins.counts[filled] / bins.counts.sum()
    return float(np.sum(weights * np.abs(bins.accuracy[filled] - bins.confidence[filled])))


def log_losses(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """−log p_y of each example's renormalised probabilities (p_y floored at 1e-12), (N,)."""
    p = renormalise(probs)
    p_true = p[np.arange(len(p)), np.asarray(labels)]
    return -np.log(np.maximum(p_true, _TINY))


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean −log p_y of the renormalised probabilities (p_y floored at 1e-12)."""
    return float(np.mean(log_losses(probs, labels)))


def brier_terms(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Σ_k (p_k − onehot_k)² of each example's renormalised probabilities, (N,)."""
    p = renormalise(probs)
    onehot = np.eye(p.shape[1])[np.asarray(labels)]
    return np.sum((p - onehot) ** 2, axis=1)


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean Σ_k (p_k − onehot_k)² of the renormalised probabilities."""
    return float(np.mean(brier_terms(probs, labels)))


def ood_scores(probs_in: np.ndarray, probs_ood: np.ndarray) -> tuple[float, float]:
    """(AUROC, AUPRC) of telling OOD (positive) from in-distribution by the score 1 − max_k p_k."""
    from sklearn.metrics import average_precision_score, roc_auc_score  # slow import; trials never need it

    probs_in, probs_ood = require_finite(probs_in), require_finite(probs_ood, "the OOD probabilities")
    score = np.concatenate([1.0 - np.max(probs_in, axis=1), 1.0 - np.max(probs_ood, axis=1)])
    is_ood = np.concatenate([np.zeros(len(probs_in)), np.ones(len(probs_ood))])
    return float(roc_auc_score(is_ood, score)), float(average_precision_score(is_ood, score))


def accuracy_vs_confidence(
    probs_in: np.ndarray,
    labels_in: np.ndarray,
    probs_ood: np.ndarray,
    thresholds: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The paper's Figure 4 curve on the union of in-distribution test and OOD examples.

    For each threshold τ: accuracy over the examples whose confidence is ≥ τ, OOD examples counting
    as wrong, and the fraction of all examples kept.

    Returns:
        (thresholds (T,), accuracy (T,) — NaN where nothing is kept, fraction kept (T,)).
    """
    thresholds = np.linspace(0.0, 1.0, 101) if thresholds is None else np.asarray(thresholds)
    conf_in, pred_in = confidence_and_prediction(probs_in)
    confidence = np.concatenate([conf_in, np.max(require_finite(probs_ood, "the OOD probabilities"), axis=1)])
    correct = np.concatenate([pred_in == np.asarray(labels_in), np.zeros(len(probs_ood), bool)])
    kept = confidence[None, :] >= thresholds[:, None]  # (T, N)
    n_kept = kept.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = (kept & correct[None, :]).sum(axis=1) / n_kept
    return thresholds, np.where(n_kept > 0, acc, np.nan), n_kept / len(confidence)


def classification_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """accuracy, ece, nll, brier and mean confidence of one labelled set."""
    return {
        "accuracy": accuracy(probs, labels),
        "ece": expected_calibration_error(probs, labels),
        "nll": negative_log_likelihood(probs, labels),
        "brier": brier_score(probs, labels),
        "mean_confidence": float(np.mean(np.max(probs, axis=1))),
    }
