"""Are the differences between the losses larger than noise? Bootstrap intervals over test examples.

Every model of an evaluation is measured on the same test examples, so two losses are compared
*paired*: each bootstrap resample draws the same examples for both, and the interval is that of the
difference of the metric (a − b). An interval that excludes 0 marks a resolved difference at its
level. ``scipy.stats.bootstrap`` does the resampling (percentile intervals: BCa's jackknife needs
N resamples of N − 1 examples, too much memory on a large test split).

What this measures is the test split's sampling noise for these trained models; the noise of
training itself (another seed, another model) needs replicates of each configuration.

The four metrics are those of ``evaluation.metrics`` on the test split: accuracy, ECE (15 bins,
top label: it depends only on each example's confidence and correctness), NLL and Brier (of the
renormalised probabilities). Each is computed per resample from per-example terms, vectorised.
ECE is biased upward under resampling (any noise widens the gaps it sums), so its intervals sit
more above the estimate than below it.
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass

import numpy as np
from scipy import stats

from evaluation.metrics import ECE_BINS, brier_terms, calibration_bins, confidence_and_prediction, log_losses

# metric -> True when higher is better
COMPARED = {"accuracy": True, "ece": False, "nll": False, "brier": False}
LEVEL = 0.95
RESAMPLES = 2000  # bootstrap resamples per interval


@dataclass(frozen=True)
class Interval:
    """A metric (or a difference) on the whole test split and its bootstrap confidence interval."""

    estimate: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass(frozen=True)
class PerExample:
    """What each test example contributes to the metrics, (N,) each."""

    correct: np.ndarray  # 1.0 where argmax is the label
    gap: np.ndarray  # correct − max_k p_k: what the example adds to its calibration bin's gap
    bins: np.ndarray  # the confidence's calibration bin
    nll: np.ndarray  # evaluation.metrics.log_losses
    brier: np.ndarray  # evaluation.metrics.brier_terms


def per_example(probs: np.ndarray, labels: np.ndarray) -> PerExample:
    """The per-example terms of ``probs`` (N, K) against ``labels`` (N,)."""
    confidence, prediction = confidence_and_prediction(probs)
    correct = (prediction == np.asarray(labels)).astype(np.float64)
    return PerExample(
        correct=correct,
        gap=correct - confidence,
        bins=calibration_bins(confidence),
        nll=log_losses(probs, labels),
        brier=brier_terms(probs, labels),
    )


def metrics_of(terms: PerExample, index: np.ndarray) -> np.ndarray:
    """Every metric of ``COMPARED``, in its order, over the examples ``index`` (B, n) of each
    resample: (M, B). ECE is Σ_b |Σ_{i∈b} (correct_i − conf_i)| / n."""
    rows, n = index.shape
    flat = (terms.bins[index] + ECE_BINS * np.arange(rows)[:, None]).ravel()  # (B·n,) bin of each draw, per row
    per_bin = np.bincount(flat, weights=terms.gap[index].ravel(), minlength=rows * ECE_BINS)
    measured = {
        "accuracy": terms.correct[index].mean(axis=-1),
        "ece": np.abs(per_bin.reshape(rows, ECE_BINS)).sum(axis=1) / n,
        "nll": terms.nll[index].mean(axis=-1),
        "brier": terms.brier[index].mean(axis=-1),
    }
    return np.stack([measured[metric] for metric in COMPARED])


def _bootstrap(statistic, n: int, level: float, resamples: int, seed: int) -> dict[str, Interval]:
    """Bootstrap the examples 0..n−1 once for every metric: ``statistic(index (B, n)) -> (M, B)``."""
    examples = np.arange(n)
    result = stats.bootstrap(
        (examples,),
        lambda index, axis=-1: statistic(np.atleast_2d(index)),
        vectorized=True,
        n_resamples=resamples,
        batch=max(1, 4_000_000 // n),  # at most ~4M drawn indices in memory at once
        confidence_level=level,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    estimates = statistic(examples[None, :])[:, 0]
    low, high = result.confidence_interval
    return {m: Interval(float(e), float(lo), float(hi)) for m, e, lo, hi in zip(COMPARED, estimates, low, high)}


def metric_intervals(
    probs: np.ndarray, labels: np.ndarray, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, Interval]:
    """metric -> its value for one model on the test split, with a bootstrap interval over the examples."""
    terms = per_example(probs, labels)
    return _bootstrap(lambda index: metrics_of(terms, index), len(terms.correct), level, resamples, seed)


def paired_differences(
    probs_a: np.ndarray,
    probs_b: np.ndarray,
    labels: np.ndarray,
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, Interval]:
    """metric -> metric(a) − metric(b) on the same test examples, with its paired bootstrap interval."""
    a, b = per_example(probs_a, labels), per_example(probs_b, labels)
    return _bootstrap(lambda index: metrics_of(a, index) - metrics_of(b, index), len(a.correct), level, resamples, seed)


@dataclass(frozen=True)
class Comparison:
    """One metric, one pair of losses: the paired difference a − b, and which is better if resolved."""

    metric: str
    a: str
    b: str
    difference: Interval

    @property
    def better(self) -> str | None:
        """The better loss when the interval excludes 0, else None (not resolved)."""
        if not self.difference.excludes_zero:
            return None
        a_higher = self.difference.low > 0  # from the interval: a percentile interval may not hold the estimate
        return self.a if a_higher == COMPARED[self.metric] else self.b


def compare_losses(
    test_probs: dict[str, np.ndarray], labels: np.ndarray, level: float = LEVEL, resamples: int = RESAMPLES
) -> list[Comparison]:
    """Every metric of ``COMPARED`` for every pair of losses (in the order given), paired over the
    test examples, metric by metric. Each pair has its own seed, from its names: adding a loss
    changes no other interval."""
    by_pair = {
        (a, b): paired_differences(
            test_probs[a], test_probs[b], labels, level, resamples, zlib.crc32(f"{a}:{b}".encode())
        )
        for a, b in itertools.combinations(test_probs, 2)
    }
    return [
        Comparison(metric, a, b, differences[metric]) for metric in COMPARED for (a, b), differences in by_pair.items()
    ]
