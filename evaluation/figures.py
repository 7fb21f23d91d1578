"""The paper's figures for a set of evaluated losses; every function returns a matplotlib Figure.

reliability_diagrams        Fig. S2/S3   accuracy vs confidence per bin, one panel per loss
accuracy_confidence_curves  Fig. 4/S5    accuracy over examples with confidence ≥ τ, ID ∪ OOD
confidence_histograms       Fig. S6/S7   confidence of correct / incorrect / OOD examples
shift_boxplots              Fig. 2/3     ECE and accuracy per shift intensity, boxes over corruptions
                                         (given replicates: over seeds and corruptions)
reliability_bands           Fig. S2/S3   over replicates: mean accuracy per bin, ± sd over seeds
accuracy_confidence_bands   Fig. 4/S5    over replicates: the mean curve, the band from min to max over seeds
confidence_landscape        Fig. 1       max-probability over the plane (2-D inputs only)
class_centres_pca           Fig. S1      embeddings and learned centres of distance heads, PCA plane
"""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")  # figures are written to files; no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from evaluation.metrics import ECE_BINS, accuracy_vs_confidence, confidence_and_prediction, reliability  # noqa: E402
from evaluation.runner import EmbeddingPlane, Evaluation, Landscape  # noqa: E402
from trainables.losses import LOSSES  # noqa: E402

COLOURS = dict(zip(LOSSES, ("tab:blue", "tab:orange", "tab:green", "tab:red")))


def _title(loss: str) -> str:
    return LOSSES[loss].title


def reliability_diagrams(evals: dict[str, Evaluation]) -> Figure:
    fig, axes = plt.subplots(1, len(evals), figsize=(3.2 * len(evals), 3.4), sharey=True, squeeze=False)
    centres = (np.arange(ECE_BINS) + 0.5) / ECE_BINS
    for ax, (loss, ev) in zip(axes[0], evals.items()):
        bins = reliability(ev.test_probs, ev.test_labels)
        filled = bins.counts > 0
        ax.bar(
            centres[filled],
            bins.accuracy[filled],
            width=1 / ECE_BINS,
            edgecolor="black",
            color=COLOURS[loss],
            label="accuracy",
        )
        ax.bar(centres[filled], bins.confidence[filled] - bins.accuracy[filled], bottom=bins.accuracy[filled],
               width=1 / ECE_BINS, color="none", edgecolor="crimson", hatch="//", label="gap")  # fmt: skip
        ax.plot([0, 1], [0, 1], "k--", linewidth=1)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", title=f"{_title(loss)}\nECE {ev.test['ece']:.3f}")
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def _per_ood_set(ood_names: list[str], title: str, draw) -> Figure:
    """Figure 4's frame: one panel per OOD set, ``draw(ax, name)`` its curves, ``title`` formatted with the set's name."""
    fig, axes = plt.subplots(1, len(ood_names), figsize=(4.5 * len(ood_names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], ood_names):
        draw(ax, name)
        ax.set(xlabel="confidence threshold τ", ylabel="accuracy on examples with confidence ≥ τ",
               title=title.format(name=name), xlim=(0, 1))  # fmt: skip
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def accuracy_confidence_curves(evals: dict[str, Evaluation]) -> Figure:
    def draw(ax, name: str) -> None:
        for loss, ev in evals.items():
            tau, acc, _ = accuracy_vs_confidence(ev.test_probs, ev.test_labels, ev.ood_probs[name])
            ax.plot(tau, acc, label=_title(loss), color=COLOURS[loss])

    ood_names = list(next(iter(evals.values())).ood_probs)
    return _per_ood_set(ood_names, "test ∪ OOD '{name}' (OOD counts as wrong)", draw)


def confidence_histograms(evals: dict[str, Evaluation], ood_name: str) -> Figure:
    fig, axes = plt.subplots(1, len(evals), figsize=(3.2 * len(evals), 3.2), sharex=True, squeeze=False)
    edges = np.linspace(0, 1, 26)
    for ax, (loss, ev) in zip(axes[0], evals.items()):
        confidence, prediction = confidence_and_prediction(ev.test_probs)
        correct = prediction == ev.test_labels
        groups = {
            "correct (ID)": confidence[correct],
            "incorrect (ID)": confidence[~correct],
            f"OOD ({ood_name})": ev.ood_probs[ood_name].max(axis=1),
        }
        for (label, values), colour in zip(groups.items(), ("tab:green", "tab:orange", "tab:purple")):
            if len(values):
                ax.hist(values, bins=edges, density=True, alpha=0.5, color=colour, label=f"{label} n={len(values)}")
        ax.set(title=_title(loss), xlabel="confidence")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("density")
    fig.tight_layout()
    return fig


def shift_boxplots(evals: dict[str, Evaluation | list[Evaluation]]) -> Figure:
    """Given a list of replicates per loss, each box holds every (seed, corruption) at its intensity."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    losses = list(evals)
    width = 0.8 / len(losses)
    first = evals[losses[0]]
    levels = (first[0] if isinstance(first, list) else first).shift_levels  # 0 (the clean test set), 1..5
    for ax, metric in zip(axes, ("ece", "accuracy")):
        for i, loss in enumerate(losses):
            replicates = evals[loss] if isinstance(evals[loss], list) else [evals[loss]]
            rows = [row for ev in replicates for row in ev.shift]
            data = [[r[metric] for r in rows if r["intensity"] == level] for level in levels]
            positions = np.arange(len(levels)) + (i - (len(losses) - 1) / 2) * width
            box = ax.boxplot(data, positions=positions, widths=width * 0.9, patch_artist=True, manage_ticks=False)
            for patch in box["boxes"]:
                patch.set_facecolor(COLOURS[loss])
        ax.set_xticks(range(len(levels)), [str(level or "Test") for level in levels])
        ax.set(xlabel="shift intensity", ylabel=metric.upper() if metric == "ece" else "accuracy")
        ax.grid(axis="y", alpha=0.3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLOURS[loss]) for loss in losses]
    fig.legend(handles, [_title(loss) for loss in losses], loc="upper center", ncol=len(losses), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    return fig


def reliability_bands(replicates: dict[str, list[Evaluation]]) -> Figure:
    """One panel per loss: each bin's accuracy averaged over the replicates (bins empty in a replicate
    are left out of its mean), with ± one standard deviation over the seeds."""
    fig, axes = plt.subplots(1, len(replicates), figsize=(3.2 * len(replicates), 3.4), sharey=True, squeeze=False)
    centres = (np.arange(ECE_BINS) + 0.5) / ECE_BINS
    for ax, (loss, evaluations) in zip(axes[0], replicates.items()):
        accuracy = np.stack([reliability(ev.test_probs, ev.test_labels).accuracy for ev in evaluations])  # (R, bins)
        filled = np.isfinite(accuracy).any(axis=0)
        with np.errstate(invalid="ignore"):
            mean, sd = np.nanmean(accuracy[:, filled], axis=0), np.nanstd(accuracy[:, filled], axis=0)
        ax.bar(centres[filled], mean, width=1 / ECE_BINS, edgecolor="black", color=COLOURS[loss], alpha=0.8,
               yerr=sd, capsize=2, label="accuracy ± sd")  # fmt: skip
        ax.plot([0, 1], [0, 1], "k--", linewidth=1)
        ece = np.array([ev.test["ece"] for ev in evaluations])
        ax.set(xlim=(0, 1), ylim=(0, 1.05), xlabel="confidence",
               title=f"{_title(loss)}\nECE {ece.mean():.3f} ± {ece.std(ddof=1):.3f} ({len(ece)} seeds)")  # fmt: skip
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def accuracy_confidence_bands(replicates: dict[str, list[Evaluation]]) -> Figure:
    """Figure 4 over replicates: per loss the mean curve over seeds and the band between the lowest
    and highest seed's."""

    def draw(ax, name: str) -> None:
        for loss, evaluations in replicates.items():
            curves = [accuracy_vs_confidence(ev.test_probs, ev.test_labels, ev.ood_probs[name]) for ev in evaluations]
            tau = curves[0][0]
            accuracy = np.stack([acc for _, acc, _ in curves])  # (R, T), NaN where a seed keeps nothing
            with warnings.catch_warnings():  # "all-NaN slice" where no seed keeps an example
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, low, high = np.nanmean(accuracy, 0), np.nanmin(accuracy, 0), np.nanmax(accuracy, 0)
            ax.plot(tau, mean, label=f"{_title(loss)} ({len(curves)} seeds)", color=COLOURS[loss])
            ax.fill_between(tau, low, high, color=COLOURS[loss], alpha=0.2, linewidth=0)

    ood_names = list(next(iter(replicates.values()))[0].ood_probs)
    return _per_ood_set(ood_names, "test ∪ OOD '{name}': mean and range over seeds", draw)


def confidence_landscape(landscapes: dict[str, Landscape]) -> Figure:
    """Max-probability of each model over the plane, with the training points (2-D inputs)."""
    fig, axes = plt.subplots(1, len(landscapes), figsize=(3.6 * len(landscapes), 3.4), squeeze=False)
    for ax, (loss, landscape) in zip(axes[0], landscapes.items()):
        xx, yy = np.meshgrid(landscape.grid, landscape.grid)
        image = ax.contourf(xx, yy, landscape.confidence, levels=np.linspace(0, 1, 21), cmap="viridis")
        ax.scatter(landscape.train_x[:, 0], landscape.train_x[:, 1], s=1, c="white", alpha=0.6)
        ax.set(title=_title(loss), aspect="equal", xticks=[], yticks=[])
    fig.colorbar(image, ax=axes[0].tolist(), label="confidence max_k p_k", shrink=0.9)
    return fig


def class_centres_pca(planes: dict[str, EmbeddingPlane]) -> Figure:
    """Training embeddings and the learned class centres of distance heads, in a 2-D PCA plane."""
    fig, axes = plt.subplots(1, len(planes), figsize=(4.2 * len(planes), 4), squeeze=False)
    for ax, (loss, plane) in zip(axes[0], planes.items()):
        e2, c2 = plane.embeddings, plane.centres  # (N, 2), (K, 2)
        ax.scatter(e2[:, 0], e2[:, 1], c=plane.labels, cmap="tab10", s=2, alpha=0.4)
        ax.scatter(c2[:, 0], c2[:, 1], c=np.arange(len(c2)), cmap="tab10", s=120, edgecolors="black", linewidths=1.5)
        ax.set(title=f"{_title(loss)}: embeddings and centres", xlabel="PC 1", ylabel="PC 2")
    fig.tight_layout()
    return fig
