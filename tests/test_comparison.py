"""``evaluation.comparison``: bootstrap intervals that cover at their nominal rate, paired differences
that are 0 for identical models and resolved for a clearly better one, metrics equal to
``evaluation.metrics`` on the whole split."""

import numpy as np
import pytest

from evaluation.comparison import (
    COMPARED,
    compare_losses,
    metric_intervals,
    metrics_of,
    paired_differences,
    per_example,
)
from evaluation.metrics import classification_metrics


def _model(rng, labels, sharpness, classes=10, normalised=True):
    """Probabilities (N, K) that favour the label by ``sharpness`` (one-vs-all style when not normalised)."""
    probs = rng.dirichlet(np.full(classes, 0.3), len(labels))
    probs[np.arange(len(labels)), labels] += sharpness
    return probs / probs.sum(axis=1, keepdims=True) if normalised else np.minimum(probs, 1.0)


@pytest.mark.parametrize("normalised", [True, False])
def test_each_metric_on_the_whole_split_is_the_one_evaluation_reports(normalised):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 500)
    probs = _model(rng, labels, 0.6, normalised=normalised)
    whole = metrics_of(per_example(probs, labels), np.arange(500)[None, :])[:, 0]  # (M,)
    reported = classification_metrics(probs, labels)
    assert whole == pytest.approx([reported[metric] for metric in COMPARED], rel=1e-12, abs=1e-15)


def test_the_95_percent_interval_covers_a_known_accuracy_about_95_percent_of_the_time():
    """200 test splits of 300 examples from a model that is right with probability 0.7."""
    rng = np.random.default_rng(1)
    covered = 0
    for repetition in range(200):
        labels = np.zeros(300, dtype=int)
        right = rng.random(300) < 0.7
        probs = np.where(right[:, None], [0.9, 0.1], [0.1, 0.9])  # (N, 2): argmax is the label where right
        interval = metric_intervals(probs, labels, resamples=500, seed=repetition)["accuracy"]
        covered += interval.low <= 0.7 <= interval.high
    assert 0.89 <= covered / 200 <= 0.99, covered  # nominal 0.95; binomial sd over 200 splits is 0.015


def test_identical_models_differ_by_exactly_zero_on_every_metric():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 10, 400)
    probs = _model(rng, labels, 0.5)
    for metric, interval in paired_differences(probs, probs.copy(), labels).items():
        assert (interval.estimate, interval.low, interval.high) == (0.0, 0.0, 0.0), metric
        assert not interval.excludes_zero
    assert all(c.better is None for c in compare_losses({"softmax": probs, "dm": probs.copy()}, labels))


def test_a_clearly_better_model_is_resolved_on_every_metric_in_its_direction():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 10, 1000)
    good, poor = _model(rng, labels, 50.0), _model(rng, labels, 0.15)  # near one-hot and right: calibrated too
    comparisons = compare_losses({"ova": poor, "dm": good}, labels, resamples=1000)
    assert {c.metric for c in comparisons} == set(COMPARED)
    for c in comparisons:
        assert c.difference.excludes_zero and c.better == "dm", c
        assert c.difference.low <= c.difference.estimate <= c.difference.high
        assert (c.difference.estimate < 0) == COMPARED[c.metric]  # ova − dm: lower accuracy, higher ECE/NLL/Brier


def test_adding_a_loss_changes_no_other_interval():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 10, 300)
    a, b, c = (_model(rng, labels, s) for s in (0.4, 0.5, 0.6))
    two = {(x.metric, x.a, x.b): x.difference for x in compare_losses({"softmax": a, "dm": b}, labels)}
    three = {(x.metric, x.a, x.b): x.difference for x in compare_losses({"softmax": a, "dm": b, "ova": c}, labels)}
    assert all(three[key] == interval for key, interval in two.items())
    assert len(three) == 3 * len(COMPARED)
