"""Metrics of DESIGN §4 against hand-computed values and an independent implementation."""

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassCalibrationError

from evaluation.metrics import (
    MEASURES,
    NonFiniteProbabilities,
    accuracy,
    accuracy_vs_confidence,
    brier_score,
    calibration_bins,
    classification_metrics,
    expected_calibration_error,
    negative_log_likelihood,
    ood_scores,
    renormalise,
)


def test_ece_by_hand():
    # confidences 0.9 (right), 0.9 (wrong), 0.5 (right), 0.2 (wrong); two examples per 0.9 bin
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.5, 0.5], [0.2, 0.8]])
    labels = np.array([0, 1, 0, 1])
    # argmax: 0, 0, 0 (tie -> first), 1 ; confidences 0.9, 0.9, 0.5, 0.8
    # bins (15): 0.9 -> 13, 0.5 -> 7, 0.8 -> 12
    # bin 13: acc 0.5, conf 0.9 -> 2/4 * 0.4 ; bin 7: acc 1, conf 0.5 -> 1/4 * 0.5 ; bin 12: acc 1, conf 0.8 -> 1/4 * 0.2
    expected = 0.5 * 0.4 + 0.25 * 0.5 + 0.25 * 0.2
    assert expected_calibration_error(probs, labels) == pytest.approx(expected)


def test_confidence_of_exactly_one_is_in_the_last_bin():
    assert calibration_bins(np.array([0.0, 1 / 15 - 1e-9, 1 / 15, 0.999, 1.0])).tolist() == [0, 0, 1, 14, 14]
    probs = np.array([[1.0, 0.0], [1.0, 0.0]])
    assert expected_calibration_error(probs, np.array([0, 1])) == pytest.approx(0.5)


def test_ece_matches_torchmetrics_on_softmax_probabilities():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 7)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, 7, size=500)
    reference = MulticlassCalibrationError(num_classes=7, n_bins=15, norm="l1")(
        torch.from_numpy(probs), torch.from_numpy(labels)
    )
    assert expected_calibration_error(probs, labels) == pytest.approx(float(reference), abs=1e-6)


def test_nll_and_brier_use_renormalised_probabilities():
    probs = np.array([[0.2, 0.2], [0.9, 0.3]])  # one-vs-all: rows need not sum to 1
    labels = np.array([0, 1])
    p = renormalise(probs)
    assert np.allclose(p, [[0.5, 0.5], [0.75, 0.25]])
    assert negative_log_likelihood(probs, labels) == pytest.approx(-(np.log(0.5) + np.log(0.25)) / 2)
    brier = ((0.5 - 1) ** 2 + 0.5**2 + 0.75**2 + (0.25 - 1) ** 2) / 2
    assert brier_score(probs, labels) == pytest.approx(brier)
    assert np.allclose(renormalise(np.zeros((1, 4))), 0.25)  # all-zero row: uniform, not NaN


def test_accuracy():
    assert accuracy(np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]), np.array([1, 1, 1])) == pytest.approx(2 / 3)


def test_ood_scores_by_hand():
    in_probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.4, 0.3]])
    perfect_ood = np.array([[0.3, 0.3], [0.2, 0.2]])
    assert ood_scores(in_probs[:2], perfect_ood) == (pytest.approx(1.0), pytest.approx(1.0))
    # scores: ID 0.1, 0.2, 0.6 ; OOD 0.7, 0.5 -> pairs (ood > id): 0.7 beats 3, 0.5 beats 2 -> 5/6
    auroc, auprc = ood_scores(in_probs, np.array([[0.3, 0.2], [0.5, 0.1]]))
    assert auroc == pytest.approx(5 / 6)
    # ranking by score: 0.7 (OOD), 0.6 (ID), 0.5 (OOD) -> AP = (1/1 + 2/3) / 2
    assert auprc == pytest.approx((1 + 2 / 3) / 2)


def test_accuracy_vs_confidence_counts_ood_as_wrong():
    probs_in = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 1])  # right (0.9), wrong (0.6), right (0.7)
    probs_ood = np.array([[0.8, 0.2], [0.5, 0.5]])
    tau, acc, kept = accuracy_vs_confidence(probs_in, labels, probs_ood, np.array([0.0, 0.65, 0.85, 0.95]))
    # >= 0.65 keeps 0.9 R, 0.7 R, 0.8 OOD; >= 0.85 keeps 0.9 R; >= 0.95 keeps nothing
    assert np.allclose(acc[:3], [2 / 5, 2 / 3, 1.0])
    assert np.isnan(acc[3]) and np.allclose(kept, [1.0, 3 / 5, 1 / 5, 0.0])


def test_renormalisation_is_right_for_any_positive_sum():
    """Far from every centre one-vs-all DM's probabilities sum to 1e-13: dividing by max(sum, 1e-12)
    gave [[0.1, 0.2]] and an NLL of 17.11 instead of −log(1/3)."""
    assert np.allclose(renormalise(np.array([[1e-13, 2e-13]])), [[1 / 3, 2 / 3]], rtol=1e-12)
    assert np.allclose(renormalise(np.array([[1e-300, 3e-300]])), [[0.25, 0.75]])
    tiny = np.array([[1e-13, 2e-13], [4e-14, 1e-14]])
    expected = -np.mean([np.log(2 / 3), np.log(0.8)])
    assert negative_log_likelihood(tiny, np.array([1, 0])) == pytest.approx(expected, rel=1e-12)
    assert brier_score(tiny, np.array([1, 0])) == pytest.approx(np.mean([2 * (1 / 3) ** 2, 2 * 0.2**2]))
    assert np.allclose(renormalise(np.zeros((2, 5))), 0.2)  # a row of zeros: uniform (documented)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_probabilities_are_refused_by_every_metric(bad):
    probs = np.array([[0.9, 0.1], [bad, 0.5], [0.2, 0.8]])
    labels = np.array([0, 1, 1])
    for metric in (negative_log_likelihood, brier_score, expected_calibration_error, accuracy):
        with pytest.raises(NonFiniteProbabilities, match="1 of 3 rows"):
            metric(probs, labels)
    with pytest.raises(NonFiniteProbabilities):
        ood_scores(np.array([[0.9, 0.1]]), probs)
    with pytest.raises(NonFiniteProbabilities, match="OOD"):
        accuracy_vs_confidence(np.array([[0.9, 0.1]]), np.array([0]), probs)


def test_an_evaluation_of_nan_probabilities_names_the_loss_and_the_set():
    from evaluation.runner import evaluate_model
    from trainables.data import load_dataset

    class Broken(torch.nn.Module):  # a champion whose weights overflowed: NaN out
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.full((len(x), 10), float("nan")) + self.w

    with pytest.raises(NonFiniteProbabilities, match="the ova_dm model's probabilities on the digits test split"):
        evaluate_model(Broken(), load_dataset("digits"), "ova_dm")


def test_evaluation_reports_progress_through_the_callers_callback_once_per_shifted_set():
    from evaluation.runner import evaluate_model
    from trainables.data import INTENSITIES, load_dataset

    class Uniform(torch.nn.Module):  # every class equally likely: the numbers are known
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.full((len(x), 10), 0.1) + self.w

    data = load_dataset("digits")
    seen = []
    result = evaluate_model(Uniform(), data, "softmax", on_shifted_set=lambda c, i: seen.append((c, i)))
    assert seen == [(c, i) for c in data.shift_corruptions for i in INTENSITIES]
    assert len(result.shift) == (1 + len(INTENSITIES)) * len(data.shift_corruptions)
    assert result.shift_levels == [0, *INTENSITIES]  # 0: the clean test set
    assert all(row["ece"] == pytest.approx(abs(row["accuracy"] - 0.1), abs=1e-6) for row in result.shift)


@pytest.mark.parametrize("classes", [2, 10, 100])
def test_each_chance_level_is_what_the_uniform_prediction_measures(classes):
    labels = np.repeat(np.arange(classes), 3)  # balanced
    uniform = np.full((len(labels), classes), 1.0 / classes)
    measured = classification_metrics(uniform, labels)
    for name, measure in MEASURES.items():
        if measure.chance is None:  # no baseline: the uniform prediction is perfectly calibrated
            assert measured[name] == pytest.approx(0.0, abs=1e-12)
        else:
            assert measure.chance(classes) == pytest.approx(measured[name]), name
