"""The paper's figures for a set of evaluated losses; every function returns a matplotlib Figure.

reliability_diagrams        Fig. S2/S3   accuracy vs confidence per bin, one panel per loss
accuracy_confidence_curves  Fig. 4/S5    accuracy over examples with confidence ≥ τ, ID ∪ OOD
confidence_histograms       Fig. S6/S7   confidence of correct / incorrect / OOD examples
shift_boxplots              Fig. 2/3     ECE and accuracy per shift intensity, boxes over corruptions
confidence_landscape        Fig. 1       max-probability over the plane (2-D inputs only)
class_centres_pca           Fig. S1      embeddings and learned centres of distance heads, PCA plane
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # figures are written to files; no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from evaluation.metrics import ECE_BINS, accuracy_vs_confidence, confidence_and_prediction, reliability  # noqa: E402
from evaluation.runner import Evaluation  # noqa: E402
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


def accuracy_confidence_curves(evals: dict[str, Evaluation]) -> Figure:
    ood_names = list(next(iter(evals.values())).ood_probs)
    fig, axes = plt.subplots(1, len(ood_names), figsize=(4.5 * len(ood_names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], ood_names):
        for loss, ev in evals.items():
            tau, acc, _ = accuracy_vs_confidence(ev.test_probs, ev.test_labels, ev.ood_probs[name])
            ax.plot(tau, acc, label=_title(loss), color=COLOURS[loss])
        ax.set(xlabel="confidence threshold τ", ylabel="accuracy on examples with confidence ≥ τ",
               title=f"test ∪ OOD '{name}' (OOD counts as wrong)", xlim=(0, 1))  # fmt: skip
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


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


def shift_boxplots(evals: dict[str, Evaluation]) -> Figure:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    losses = list(evals)
    width = 0.8 / len(losses)
    for ax, metric in zip(axes, ("ece", "accuracy")):
        for i, loss in enumerate(losses):
            rows = evals[loss].shift
            data = [[r[metric] for r in rows if r["intensity"] == level] for level in range(6)]
            positions = np.arange(6) + (i - (len(losses) - 1) / 2) * width
            box = ax.boxplot(data, positions=positions, widths=width * 0.9, patch_artist=True, manage_ticks=False)
            for patch in box["boxes"]:
                patch.set_facecolor(COLOURS[loss])
        ax.set_xticks(range(6), ["Test", "1", "2", "3", "4", "5"])
        ax.set(xlabel="shift intensity", ylabel=metric.upper() if metric == "ece" else "accuracy")
        ax.grid(axis="y", alpha=0.3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLOURS[loss]) for loss in losses]
    fig.legend(handles, [_title(loss) for loss in losses], loc="upper center", ncol=len(losses), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    return fig


@torch.no_grad()
def confidence_landscape(models: dict[str, torch.nn.Module], train_x: np.ndarray, extent: float = 80.0) -> Figure:
    """Max-probability of each model over [−extent, extent]², with the training points (2-D inputs)."""
    grid = np.linspace(-extent, extent, 200)
    xx, yy = np.meshgrid(grid, grid)
    points = torch.from_numpy(np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32))  # (G, 2)
    fig, axes = plt.subplots(1, len(models), figsize=(3.6 * len(models), 3.4), squeeze=False)
    for ax, (loss, model) in zip(axes[0], models.items()):
        confidence = model.eval()(points).max(dim=1).values.reshape(xx.shape).numpy()
        image = ax.contourf(xx, yy, confidence, levels=np.linspace(0, 1, 21), cmap="viridis")
        ax.scatter(train_x[::20, 0], train_x[::20, 1], s=1, c="white", alpha=0.6)
        ax.set(title=_title(loss), aspect="equal", xticks=[], yticks=[])
    fig.colorbar(image, ax=axes[0].tolist(), label="confidence max_k p_k", shrink=0.9)
    return fig


@torch.no_grad()
def class_centres_pca(classifiers: dict[str, torch.nn.Module], x: torch.Tensor, y: np.ndarray) -> Figure:
    """Training embeddings and the learned class centres of distance heads, in a 2-D PCA plane."""
    fig, axes = plt.subplots(1, len(classifiers), figsize=(4.2 * len(classifiers), 4), squeeze=False)
    for ax, (loss, classifier) in zip(axes[0], classifiers.items()):
        embeddings = classifier.eval().embed(x).double().numpy()  # (N, D)
        centres = classifier.head.centres.detach().double().numpy()  # (K, D)
        mean = embeddings.mean(axis=0)
        _, _, vt = np.linalg.svd(embeddings - mean, full_matrices=False)
        e2, c2 = (embeddings - mean) @ vt[:2].T, (centres - mean) @ vt[:2].T  # (N, 2), (K, 2)
        ax.scatter(e2[:, 0], e2[:, 1], c=y, cmap="tab10", s=2, alpha=0.4)
        ax.scatter(c2[:, 0], c2[:, 1], c=np.arange(len(c2)), cmap="tab10", s=120, edgecolors="black", linewidths=1.5)
        ax.set(title=f"{_title(loss)}: embeddings and centres", xlabel="PC 1", ylabel="PC 2")
    fig.tight_layout()
    return fig
