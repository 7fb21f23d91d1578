"""Each figure of ``evaluation.figures``, by what it draws: panels, series, their data, labels.

The evaluations are built from known probabilities, so every bar, line, histogram and box can be
checked against the metric it plots.
"""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from evaluation import figures
from evaluation.metrics import ECE_BINS, accuracy_vs_confidence, classification_metrics, reliability
from evaluation.runner import Evaluation, embedding_plane_of, landscape_of
from trainables.losses import LOSSES
from trainables.models import build_classifier

K = 4


def _evaluation(loss: str, seed: int) -> Evaluation:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, K, 300)
    logits = rng.normal(size=(300, K)) + 2.0 * np.eye(K)[labels]  # mostly right, not always
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    ood = rng.dirichlet(np.ones(K), size=100)
    shift = [{"corruption": c, "intensity": i, "accuracy": 0.9 - 0.1 * i - 0.01 * j, "ece": 0.02 * i + 0.001 * j}
             for j, c in enumerate(("fog", "snow", "contrast")) for i in range(6)]  # fmt: skip
    return Evaluation(loss=loss, test=classification_metrics(probs, labels), train_accuracy=1.0, test_probs=probs,
                      test_labels=labels, ood_probs={"far": ood, "near": ood[:50]}, shift=shift)  # fmt: skip


@pytest.fixture
def evals():
    yield {loss: _evaluation(loss, seed) for seed, loss in enumerate(LOSSES)}
    plt.close("all")


def test_reliability_diagrams_draw_each_losss_bins_and_ece(evals):
    fig = figures.reliability_diagrams(evals)
    assert len(fig.axes) == len(LOSSES)
    for ax, (loss, ev) in zip(fig.axes, evals.items()):
        assert ax.get_title() == f"{LOSSES[loss].title}\nECE {ev.test['ece']:.3f}"
        bins = reliability(ev.test_probs, ev.test_labels)
        filled = bins.counts > 0
        accuracy_bars = ax.containers[0]
        assert [round(b.get_height(), 12) for b in accuracy_bars] == [round(a, 12) for a in bins.accuracy[filled]]
        assert all(b.get_width() == pytest.approx(1 / ECE_BINS) for b in accuracy_bars)
        gap_bars = ax.containers[1]  # drawn from accuracy up to confidence
        assert [b.get_y() + b.get_height() for b in gap_bars] == pytest.approx(list(bins.confidence[filled]))
        assert ax.get_xlabel() == "confidence" and ax.get_xlim() == (0, 1)
    assert fig.axes[0].get_ylabel() == "accuracy"


def test_accuracy_confidence_curves_draw_one_line_per_loss_per_ood_set(evals):
    fig = figures.accuracy_confidence_curves(evals)
    assert [ax.get_title() for ax in fig.axes] == ["test ∪ OOD 'far' (OOD counts as wrong)",
                                                   "test ∪ OOD 'near' (OOD counts as wrong)"]  # fmt: skip
    for ax, name in zip(fig.axes, ("far", "near")):
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == [m.title for m in LOSSES.values()]
        for line, ev in zip(lines, evals.values()):
            tau, acc, _ = accuracy_vs_confidence(ev.test_probs, ev.test_labels, ev.ood_probs[name])
            assert np.array_equal(line.get_xdata(), tau) and np.allclose(line.get_ydata(), acc, equal_nan=True)


def test_confidence_histograms_split_correct_incorrect_and_ood(evals):
    fig = figures.confidence_histograms(evals, "far")
    assert len(fig.axes) == len(LOSSES)
    for ax, ev in zip(fig.axes, evals.values()):
        correct = int((ev.test_probs.argmax(axis=1) == ev.test_labels).sum())
        labels = ax.get_legend_handles_labels()[1]
        assert labels == [f"correct (ID) n={correct}", f"incorrect (ID) n={300 - correct}", "OOD (far) n=100"]
        densities = [sum(p.get_height() * p.get_width() for p in container) for container in ax.containers]
        assert densities == pytest.approx([1.0, 1.0, 1.0])  # each group a density over [0, 1]


def test_shift_boxplots_draw_a_box_per_loss_and_intensity_over_corruptions(evals):
    fig = figures.shift_boxplots(evals)
    ece_ax, accuracy_ax = fig.axes
    for ax, metric in ((ece_ax, "ece"), (accuracy_ax, "accuracy")):
        assert [t.get_text() for t in ax.get_xticklabels()] == ["Test", "1", "2", "3", "4", "5"]
        assert ax.get_xlabel() == "shift intensity"
        medians = [line for line in ax.get_lines() if line.get_linestyle() == "-" and len(line.get_xdata()) == 2
                   and line.get_ydata()[0] == line.get_ydata()[1] and line.get_color() != "black"]  # fmt: skip
        assert len(ax.patches) == 6 * len(LOSSES)  # one box per (loss, intensity)
        expected = sorted(np.median([r[metric] for r in ev.shift if r["intensity"] == i])
                          for ev in evals.values() for i in range(6))  # fmt: skip
        drawn = sorted(line.get_ydata()[0] for line in medians if line.get_ydata()[0] in expected)
        assert drawn == pytest.approx(expected)
    assert ece_ax.get_ylabel() == "ECE" and accuracy_ax.get_ylabel() == "accuracy"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [m.title for m in LOSSES.values()]


def test_confidence_landscape_contours_each_models_max_probability():
    class Constant(torch.nn.Module):  # confidence 0.72 everywhere
        def forward(self, x):
            return torch.tensor([0.72, 0.18, 0.1]).expand(len(x), 3)

    landscape = landscape_of(Constant(), np.zeros((100, 2)))  # computed where the model is measured
    assert landscape.confidence.shape == (len(landscape.grid), len(landscape.grid)) and len(landscape.train_x) == 5
    fig = figures.confidence_landscape({"softmax": landscape, "ova_dm": landscape})
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [LOSSES["softmax"].title, LOSSES["ova_dm"].title]
    colourbar = next(ax for ax in fig.axes if not ax.get_title())
    assert colourbar.get_ylabel() == "confidence max_k p_k"
    for ax in panels:
        filled = ax.collections[0]  # the contour set: a constant 0.72 fills only the band 0.70-0.75
        levels = [float(v) for v, paths in zip(filled.get_array(), filled.get_paths()) if len(paths.vertices)]
        assert levels == [pytest.approx(0.725)]
    plt.close(fig)


def test_class_centres_pca_draws_every_embedding_and_every_centre():
    torch.manual_seed(0)
    config = {"model": "mlp", "hidden": [8], "loss": "dm"}
    classifier = build_classifier((4,), K, config)
    with torch.no_grad():
        classifier.head.centres.normal_()
    x, y = torch.randn(50, 4), np.arange(50) % K
    fig = figures.class_centres_pca({"dm": embedding_plane_of(classifier, x, y)})  # computed where it is measured
    (ax,) = fig.axes
    embeddings, centres = ax.collections
    assert len(embeddings.get_offsets()) == 50 and len(centres.get_offsets()) == K
    assert ax.get_title() == f"{LOSSES['dm'].title}: embeddings and centres"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("PC 1", "PC 2")
    # the plane is the embeddings' first two principal components: their spread is largest along PC 1
    points = np.asarray(embeddings.get_offsets())
    assert points[:, 0].var() >= points[:, 1].var() and abs(points.mean(axis=0)).max() < 1e-9
    plt.close(fig)


def test_the_figures_over_seeds_draw_a_band_from_every_replicate(evals):
    replicates = {loss: [_evaluation(loss, 10 * i + seed) for seed in range(3)] for i, loss in enumerate(LOSSES)}
    fig = figures.reliability_bands(replicates)
    assert len(fig.axes) == len(LOSSES)
    ax = fig.axes[0]
    accuracy = np.stack([reliability(ev.test_probs, ev.test_labels).accuracy for ev in replicates["softmax"]])
    filled = np.isfinite(accuracy).any(axis=0)
    heights = [patch.get_height() for patch in ax.patches]
    assert heights == pytest.approx(np.nanmean(accuracy[:, filled], axis=0).tolist())
    assert "3 seeds" in ax.get_title()
    fig = figures.accuracy_confidence_bands(replicates)
    assert len(fig.axes) == 2 and len(fig.axes[0].collections) == len(LOSSES)  # one band per loss
    fig = figures.shift_boxplots(replicates)  # each box holds every (seed, corruption) at its intensity
    accuracy_ax = fig.axes[1]
    assert len(accuracy_ax.patches) == 6 * len(LOSSES)
    medians = {round(float(line.get_ydata()[0]), 12) for line in accuracy_ax.get_lines() if len(line.get_xdata()) == 2}
    for loss, evaluations in replicates.items():
        pooled = [r["accuracy"] for ev in evaluations for r in ev.shift if r["intensity"] == 5]
        assert len(pooled) == 9 and round(float(np.median(pooled)), 12) in medians, loss
