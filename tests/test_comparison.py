"""``evaluation.comparison``: bootstrap intervals that cover at their nominal rate (over examples,
and over seeds and examples for replicates), paired differences that are 0 for identical models and
resolved for a clearly better one, metrics equal to ``evaluation.metrics`` on the whole split."""

import numpy as np
import pytest
from scipy import stats

from evaluation.comparison import (
    compare_losses,
    metric_intervals,
    metrics_of,
    over_seeds,
    paired_differences,
    per_example,
)
from evaluation.metrics import MEASURES, classification_metrics


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
    assert whole == pytest.approx([reported[metric] for metric in MEASURES], rel=1e-12, abs=1e-15)


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
    assert {c.metric for c in comparisons} == set(MEASURES)
    for c in comparisons:
        assert c.difference.excludes_zero and c.better == "dm", c
        assert c.difference.low <= c.difference.estimate <= c.difference.high
        assert (c.difference.estimate < 0) == MEASURES[
            c.metric
        ].higher_is_better  # ova − dm: lower accuracy, higher ECE/NLL/Brier


def test_adding_a_loss_changes_no_other_interval():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 10, 300)
    a, b, c = (_model(rng, labels, s) for s in (0.4, 0.5, 0.6))
    two = {(x.metric, x.a, x.b): x.difference for x in compare_losses({"softmax": a, "dm": b}, labels)}
    three = {(x.metric, x.a, x.b): x.difference for x in compare_losses({"softmax": a, "dm": b, "ova": c}, labels)}
    assert all(three[key] == interval for key, interval in two.items())
    assert len(three) == 3 * len(MEASURES)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _replicates(rng, difficulty, seeds, seed_sd=0.3):
    """R models on the same examples: example i is right with probability σ(1 + b_seed − difficulty_i)."""
    models = []
    for _ in range(seeds):
        right = rng.random(len(difficulty)) < _sigmoid(1.0 + rng.normal(0, seed_sd) - difficulty)
        models.append(np.where(right[:, None], [0.9, 0.1], [0.1, 0.9]))  # (N, 2)
    return models


def test_the_interval_over_seeds_and_examples_covers_the_configurations_mean_accuracy_about_95_percent():
    """200 experiments: a test split of 300 examples (each with its own difficulty, shared by the seeds)
    and 5 seeds (each shifting every example's chance of being right): the interval must cover the
    accuracy expected over both, which neither the seeds alone nor the examples alone would."""
    rng = np.random.default_rng(5)
    population = _sigmoid(1.0 + rng.normal(0, 0.3, (1, 4000)) - rng.normal(0, 1.5, (4000, 1))).mean()
    covered = examples_only = 0
    for repetition in range(200):
        difficulty = rng.normal(0, 1.5, 300)
        models = _replicates(rng, difficulty, 5)
        labels = np.zeros(300, dtype=int)
        interval = metric_intervals(models, labels, resamples=500, seed=repetition)["accuracy"]
        covered += interval.low <= population <= interval.high
        one = metric_intervals(models[0], labels, resamples=500, seed=repetition)["accuracy"]
        examples_only += one.low <= population <= one.high
    assert 0.89 <= covered / 200 <= 0.99, covered
    assert examples_only < covered  # one seed's interval leaves the training noise out


def test_the_estimate_over_replicates_is_their_mean_and_seed_noise_widens_the_interval():
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 10, 400)
    spread = [_model(rng, labels, s) for s in (0.2, 0.5, 0.9)]  # three seeds that disagree a lot
    over = metric_intervals(spread, labels)
    for metric in MEASURES:
        each = [classification_metrics(p, labels)[metric] for p in spread]
        assert over[metric].estimate == pytest.approx(np.mean(each), rel=1e-12)
    alone = metric_intervals(spread[1], labels)
    assert over["accuracy"].high - over["accuracy"].low > alone["accuracy"].high - alone["accuracy"].low


def test_identical_replicates_differ_by_exactly_zero_and_unequal_counts_are_refused():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 10, 300)
    models = [_model(rng, labels, s) for s in (0.3, 0.6, 0.9)]
    for metric, interval in paired_differences(models, [m.copy() for m in models], labels).items():
        assert (interval.estimate, interval.low, interval.high) == (0.0, 0.0, 0.0), metric
    with pytest.raises(ValueError, match="as many replicates"):
        paired_differences(models, models[:2], labels)


def test_a_difference_paired_over_seeds_resolves_what_the_seeds_noise_would_hide():
    """b is a's replicate r made slightly worse on the same examples: pairing by seed cancels the
    large seed-to-seed spread that an unpaired comparison would carry."""
    rng = np.random.default_rng(8)
    labels = rng.integers(0, 10, 1000)
    a = [_model(rng, labels, s) for s in (0.2, 0.6, 1.0, 1.4)]
    b = [0.97 * p + 0.03 / 10 for p in a]  # the same models, a little less sure of every answer: higher NLL
    paired = paired_differences(a, b, labels)["nll"]
    assert paired.high < 0  # a's NLL is lower on the same seeds and examples, resolved
    shuffled = paired_differences(a, b[::-1], labels)["nll"]  # seeds no longer matched
    assert shuffled.low < 0 < shuffled.high


def test_over_seeds_is_the_t_interval_of_the_mean():
    values = [0.91, 0.94, 0.93, 0.90, 0.95]
    spread = over_seeds(values)
    half = stats.t.ppf(0.975, df=4) * np.std(values, ddof=1) / np.sqrt(5)
    assert (spread.mean, spread.sd) == pytest.approx((np.mean(values), np.std(values, ddof=1)))
    assert (spread.interval.low, spread.interval.high) == pytest.approx(
        (np.mean(values) - half, np.mean(values) + half)
    )
    assert over_seeds([0.5, 0.5, 0.5]).interval.low == 0.5  # no spread, no width
    near_zero = over_seeds([0.001, 0.0, 0.02], bounds=(0.0, 1.0))  # a confidence: t would go below 0
    assert near_zero.interval.low == 0.0 and near_zero.interval.high == pytest.approx(
        np.mean([0.001, 0.0, 0.02]) + stats.t.ppf(0.975, df=2) * np.std([0.001, 0.0, 0.02], ddof=1) / np.sqrt(3)
    )
