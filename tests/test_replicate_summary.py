"""``evaluation.replicate_summary``: every number over replicates, from evaluations made by hand, and
the report's tables over seeds (``tuning.report.replicate_section``)."""

import numpy as np
import pytest
from scipy import stats

from evaluation.metrics import MEASURES, classification_metrics
from evaluation.replicate_summary import OOD_SCORES, summarize_replicates
from evaluation.runner import Evaluation
from trainables.losses import LOSSES
from tuning.report import replicate_section, replicate_summary_table

K = 4


def _replicate(loss: str, seed: int, sharpness: float) -> Evaluation:
    rng = np.random.default_rng(100)  # the same test split for every replicate
    labels = rng.integers(0, K, 300)
    noise = np.random.default_rng(seed).normal(size=(300, K))
    logits = noise + sharpness * np.eye(K)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    shift = [{"corruption": c, "intensity": i, "accuracy": 0.9 - 0.1 * i - 0.01 * seed, "ece": 0.02 * i + 0.001 * j}
             for j, c in enumerate(("fog", "snow")) for i in range(6)]  # fmt: skip
    ood = {"far": {"auroc": 0.8 + 0.01 * seed, "auprc": 0.7, "mean_confidence": 0.3 + 0.02 * seed}}
    return Evaluation(loss=loss, test=classification_metrics(probs, labels), train_accuracy=1.0, test_probs=probs,
                      test_labels=labels, ood=ood, shift=shift)  # fmt: skip


@pytest.fixture
def replicates():
    return {
        "softmax": {n: _replicate("softmax", n, 1.0) for n in range(3)},
        "ova_dm": {n: _replicate("ova_dm", 10 + n, 3.0) for n in range(3)},
    }


def test_each_number_is_the_mean_and_sd_of_its_replicates_with_an_interval_around_it(replicates):
    summary = summarize_replicates(replicates)
    assert summary.replicates == {"softmax": 3, "ova_dm": 3} and summary.examples == 300
    for loss, by_number in replicates.items():
        for metric in MEASURES:
            values = [ev.test[metric] for ev in by_number.values()]
            spread = summary.test[loss][metric]
            assert (spread.mean, spread.sd) == pytest.approx((np.mean(values), np.std(values, ddof=1)), rel=1e-12)
            assert spread.interval.low <= spread.mean <= spread.interval.high
        aurocs = [ev.ood["far"]["auroc"] for ev in by_number.values()]
        t_low, _ = stats.t.interval(0.95, 2, loc=np.mean(aurocs), scale=stats.sem(aurocs))
        assert summary.ood[loss]["far"]["auroc"].interval.low == pytest.approx(t_low)
        assert set(summary.ood[loss]["far"]) == set(OOD_SCORES)
        at_3 = [np.mean([r["accuracy"] for r in ev.shift if r["intensity"] == 3]) for ev in by_number.values()]
        assert summary.shift[loss][3]["accuracy"].mean == pytest.approx(np.mean(at_3))


def test_the_sharper_loss_is_resolved_better_over_seeds_and_examples(replicates):
    summary = summarize_replicates(replicates)
    accuracy = next(c for c in summary.comparisons if c.metric == "accuracy")
    assert (accuracy.a, accuracy.b, accuracy.better) == ("softmax", "ova_dm", "ova_dm")
    assert len(summary.comparisons) == len(MEASURES)  # one pair


def test_comparisons_pair_only_the_replicate_numbers_every_loss_has(replicates):
    del replicates["ova_dm"][2]  # its third replicate failed
    summary = summarize_replicates(replicates)
    assert summary.replicates == {"softmax": 3, "ova_dm": 2}  # each loss's own numbers use all it has
    assert summary.comparisons  # paired over replicates 0 and 1
    replicates["ova_dm"] = {5: replicates["ova_dm"][0], 6: replicates["ova_dm"][1]}  # no number in common
    assert summarize_replicates(replicates).comparisons == []


def test_the_report_shows_mean_sd_and_interval_in_every_table_over_seeds(replicates):
    summary = summarize_replicates(replicates)
    text = "\n".join(replicate_section("digits", summary))
    spread = summary.test["softmax"]["accuracy"]
    cell = f"{spread.mean:.4f} ± {spread.sd:.4f} [{spread.interval.low:.4f}, {spread.interval.high:.4f}]"
    assert f"| softmax | 3 | {cell} |" in text
    assert f"| {LOSSES['softmax'].title} | " in text and "As the paper's Table S1 (mean ± sd over seeds" in text
    assert "### Out of distribution, over seeds" in text and "As the paper's Tables S2/S3" in text
    assert "### Under shift, over seeds" in text and "| softmax | accuracy |" in text
    assert "paired over seeds and test examples" in text
    header = replicate_summary_table(summary).splitlines()[0]
    assert header == "| loss | seeds | accuracy | ECE | NLL | Brier | conf far |"  # toy2d's Fig. 1 column
