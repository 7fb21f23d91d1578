"""Are the differences between the losses larger than noise? Bootstrap intervals over seeds and test examples.

Every model of an evaluation is measured on the same test examples, so two losses are compared
*paired*: each bootstrap resample draws the same examples for both, and the interval is that of the
difference of the metric (a − b). An interval that excludes 0 marks a resolved difference at its
level. ``scipy.stats.bootstrap`` does the resampling (percentile intervals: BCa's jackknife needs
N resamples of N − 1 examples, too much memory on a large test split).

With one model per loss, that is the test split's sampling noise for these trained models. With R
replicates per loss (the same configuration trained with R seeds; replicate r of every loss shares
seed r), the resampling is two-way: each resample draws R seeds and N examples independently, with
replacement, and the statistic is the mean over the drawn seeds of the metric on the drawn
examples. Both noises are then in the interval, and a difference is paired over both: the same
seeds and the same examples for a and b. Quantities measured once per replicate without
per-example terms (AUROC, accuracy under shift) get a t interval over the seeds (``over_seeds``).

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

from evaluation.metrics import ECE_BINS, MEASURES, brier_terms, calibration_bins, confidence_and_prediction, log_losses

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
    """Every metric of ``MEASURES``, in its order, over the examples ``index`` (B, n) of each
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
    return np.stack([measured[metric] for metric in MEASURES])


def mean_over_seeds(replicates: list[PerExample], seeds: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Every metric of ``MEASURES`` averaged over the replicates ``seeds`` (B, R) drawn by each
    resample, each measured on that resample's examples ``index`` (B, n): (M, B)."""
    measured = np.stack([metrics_of(terms, index) for terms in replicates])  # (R, M, B)
    drawn = measured[seeds, :, np.arange(len(index))[:, None]]  # (B, R, M): resample b's draws
    return drawn.mean(axis=1).T


Models = np.ndarray | list[np.ndarray]  # one model's probabilities (N, K), or its R replicates'


def _replicates(probs: Models) -> list[np.ndarray]:
    return list(probs) if isinstance(probs, (list, tuple)) else [probs]


def _bootstrap(statistic, replicates: int, n: int, level: float, resamples: int, seed: int) -> dict[str, Interval]:
    """Bootstrap every metric at once: ``statistic(seeds (B, R), examples (B, n)) -> (M, B)``. With
    two or more replicates the seeds 0..R−1 are resampled too, independently of the examples."""
    seeds, examples = np.arange(replicates), np.arange(n)
    if replicates >= 2:
        data = (seeds, examples)

        def resampled(drawn_seeds, index, axis=-1):
            return statistic(np.atleast_2d(drawn_seeds), np.atleast_2d(index))
    else:  # one model: only the examples vary (scipy needs two observations to resample)
        data = (examples,)

        def resampled(index, axis=-1):
            index = np.atleast_2d(index)
            return statistic(np.zeros((len(index), 1), dtype=int), index)

    result = stats.bootstrap(
        data,
        resampled,
        vectorized=True,
        paired=False,  # seeds and examples are drawn independently (a two-way bootstrap)
        n_resamples=resamples,
        batch=max(1, 4_000_000 // (n * replicates)),  # at most ~4M drawn terms in memory at once
        confidence_level=level,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    estimates = statistic(seeds[None, :], examples[None, :])[:, 0]
    low, high = result.confidence_interval
    return {m: Interval(float(e), float(lo), float(hi)) for m, e, lo, hi in zip(MEASURES, estimates, low, high)}


def metric_intervals(
    probs: Models, labels: np.ndarray, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, Interval]:
    """metric -> its value on the test split (the mean over replicates, given a list of them), with
    a bootstrap interval over the examples (and the seeds)."""
    replicates = [per_example(p, labels) for p in _replicates(probs)]
    return _bootstrap(lambda s, index: mean_over_seeds(replicates, s, index), len(replicates), len(labels),
                      level, resamples, seed)  # fmt: skip


def paired_differences(
    probs_a: Models,
    probs_b: Models,
    labels: np.ndarray,
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, Interval]:
    """metric -> metric(a) − metric(b) on the same test examples (and, given R replicates of each,
    paired by position, the same seeds), with its paired bootstrap interval.

    Raises:
        ValueError: a and b with different numbers of replicates.
    """
    a = [per_example(p, labels) for p in _replicates(probs_a)]
    b = [per_example(p, labels) for p in _replicates(probs_b)]
    if len(a) != len(b):
        raise ValueError(f"paired over seeds needs as many replicates of each: {len(a)} and {len(b)}")

    def difference(seeds, index):
        return mean_over_seeds(a, seeds, index) - mean_over_seeds(b, seeds, index)

    return _bootstrap(difference, len(a), len(labels), level, resamples, seed)


@dataclass(frozen=True)
class Spread:
    """A quantity over R replicates: mean, standard deviation (ddof 1) and an interval for the mean."""

    mean: float
    sd: float
    interval: Interval
    replicates: int


def over_seeds(values, level: float = LEVEL, bounds: tuple[float, float] | None = None) -> Spread:
    """The spread of one value per replicate (R ≥ 2), with the t interval of its mean
    (``scipy.stats.ttest_1samp``), clipped to ``bounds`` (a probability's [0, 1]: the t interval
    is symmetric and knows no range)."""
    values = np.asarray(values, dtype=np.float64)
    mean, sd = float(values.mean()), float(values.std(ddof=1))
    if sd <= 1e-12 * max(1.0, abs(mean)):  # every seed gave the same value (up to rounding): no width
        return Spread(mean, 0.0, Interval(mean, mean, mean), len(values))
    low, high = stats.ttest_1samp(values, popmean=0.0).confidence_interval(level)
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return Spread(mean, sd, Interval(mean, float(low), float(high)), len(values))


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
        return self.a if a_higher == MEASURES[self.metric].higher_is_better else self.b


def compare_losses(
    test_probs: dict[str, Models], labels: np.ndarray, level: float = LEVEL, resamples: int = RESAMPLES
) -> list[Comparison]:
    """Every metric of ``MEASURES`` for every pair of losses (in the order given), paired over the
    test examples (and the seeds, given R replicates of each), metric by metric. Each pair has its
    own seed, from its names: adding a loss changes no other interval."""
    by_pair = {
        (a, b): paired_differences(
            test_probs[a], test_probs[b], labels, level, resamples, zlib.crc32(f"{a}:{b}".encode())
        )
        for a, b in itertools.combinations(test_probs, 2)
    }
    return [
        Comparison(metric, a, b, differences[metric]) for metric in MEASURES for (a, b), differences in by_pair.items()
    ]
