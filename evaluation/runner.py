"""Evaluate one trained model on a dataset: in distribution, under shift, and against OOD sets.

The model is loaded once, where it is measured (a Ray task of ``tuning.fan_out``): so what the
figures draw of the model itself (Fig. 1's confidence landscape, Fig. S1's embedding plane) is
computed here too, and the driver draws from the ``Evaluation`` alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from evaluation.metrics import (
    accuracy,
    classification_metrics,
    expected_calibration_error,
    ood_scores,
    require_finite,
)
from trainables.data import INTENSITIES, Dataset, take
from trainables.data.provenance import Provenance, ood_provenance, split_provenance
from trainables.loop import predict_probabilities
from trainables.losses import LOSSES

TRAIN_ACCURACY_FILES = 50_000  # training accuracy of file-based data (ImageNet) is measured on this many
LANDSCAPE_EXTENT = 80.0  # Fig. 1 covers [−80, 80]², as the paper's
LANDSCAPE_POINTS = 200  # per axis
PLANE_EXAMPLES = 2000  # Fig. S1 needs no more, and one batch of many more would not fit a GPU


@dataclass
class Landscape:
    """Fig. 1's data: a model of 2-D inputs' confidence over a square grid, and training points."""

    grid: np.ndarray  # (G,) the coordinates along each axis
    confidence: np.ndarray  # (G, G) max_k p_k; row i is y = grid[i], column j is x = grid[j]
    train_x: np.ndarray  # (n, 2) every 20th training point, drawn over it


@dataclass
class EmbeddingPlane:
    """Fig. S1's data: a distance head's training embeddings and class centres, projected on the
    embeddings' first two principal components."""

    embeddings: np.ndarray  # (n, 2)
    centres: np.ndarray  # (K, 2)
    labels: np.ndarray  # (n,)


@dataclass
class Evaluation:
    """Everything measured for one loss's model.

    Attributes:
        test: accuracy, ece, nll, brier, mean_confidence on the test split.
        train_accuracy: accuracy on the training split (the toy problem should reach 1.0).
        test_probs, test_labels: kept for the figures, (N, K) and (N,).
        ood_probs: OOD set name -> probabilities (M, K).
        ood: OOD set name -> {"auroc", "auprc", "mean_confidence"}.
        shift: rows {"corruption", "intensity", "accuracy", "ece"}; intensity 0 is the clean test set.
        inputs: the provenance of the test split and of each OOD set scored (MLflow dataset inputs).
        landscape: Fig. 1's data, for 2-D inputs only.
        plane: Fig. S1's data, for the distance losses only.
    """

    loss: str
    test: dict[str, float]
    train_accuracy: float
    test_probs: np.ndarray
    test_labels: np.ndarray
    ood_probs: dict[str, np.ndarray] = field(default_factory=dict)
    ood: dict[str, dict[str, float]] = field(default_factory=dict)
    shift: list[dict] = field(default_factory=list)
    inputs: list[Provenance] = field(default_factory=list)
    landscape: Landscape | None = None
    plane: EmbeddingPlane | None = None

    @property
    def shift_levels(self) -> list[int]:
        """The intensities measured under shift, 0 (the clean test set) first; [] without shift."""
        return sorted({row["intensity"] for row in self.shift})


def evaluate_model(
    model: torch.nn.Module, data: Dataset, loss: str, on_shifted_set: Callable[[str, int], None] | None = None
) -> Evaluation:
    """Run every measurement of DESIGN §4 for ``model`` (inputs → probabilities) on ``data``.

    ``on_shifted_set(corruption, intensity)`` is called after each of the
    ``len(INTENSITIES) × len(data.shift_corruptions)`` shifted test sets: the caller's progress report (this module shows none of its own).

    Raises:
        NonFiniteProbabilities: the model gives NaN or infinite probabilities on one of the sets
            (the message names the loss and the set).
    """

    def probabilities_on(x, what: str) -> np.ndarray:
        return require_finite(
            predict_probabilities(model, x, workers=torch.get_num_threads()),
            f"the {loss} model's probabilities on {what}",
        )

    labels = data.test.y.numpy()
    probs = probabilities_on(data.test.x, f"the {data.name} test split")
    train_x, train_y = data.train.x, data.train.y.numpy()
    if not isinstance(train_x, torch.Tensor):  # files (ImageNet): an evenly spaced sample, not augmented
        train_x = train_x.evaluation_view(TRAIN_ACCURACY_FILES)
        train_y = train_x.labels.numpy()
    result = Evaluation(
        loss=loss,
        test=classification_metrics(probs, labels),
        train_accuracy=accuracy(probabilities_on(train_x, f"the {data.name} training split"), train_y),
        test_probs=probs,
        test_labels=labels,
        inputs=[split_provenance(data, "test"), *(ood_provenance(data, name) for name in data.ood)],
    )
    for name, x in data.ood.items():
        ood_probs = probabilities_on(x, f"the OOD set {name}")
        auroc, auprc = ood_scores(probs, ood_probs)
        result.ood_probs[name] = ood_probs
        result.ood[name] = {"auroc": auroc, "auprc": auprc, "mean_confidence": float(ood_probs.max(axis=1).mean())}
    if data.shifted is not None:
        for corruption in data.shift_corruptions:
            result.shift.append(
                {
                    "corruption": corruption,
                    "intensity": 0,
                    "accuracy": result.test["accuracy"],
                    "ece": result.test["ece"],
                }
            )
            for intensity in INTENSITIES:
                shifted = probabilities_on(
                    data.shifted(corruption, intensity), f"{corruption} at intensity {intensity}"
                )
                result.shift.append(
                    {
                        "corruption": corruption,
                        "intensity": intensity,
                        "accuracy": accuracy(shifted, labels),
                        "ece": expected_calibration_error(shifted, labels),
                    }
                )
                if on_shifted_set is not None:
                    on_shifted_set(corruption, intensity)
    if data.input_shape == (2,):
        result.landscape = landscape_of(model, data.train.x.numpy())
    classifier = getattr(model, "classifier", None)  # a ProbabilityModel's; the plane needs its embedding
    if LOSSES[loss].is_distance and classifier is not None:
        index = torch.arange(0, len(data.train), max(1, len(data.train) // PLANE_EXAMPLES))[:PLANE_EXAMPLES]
        sample = take(data.train.x, index)  # (n, ...), spread evenly over the split
        result.plane = embedding_plane_of(classifier, sample, data.train.y[index].numpy())
    return result


@torch.no_grad()
def landscape_of(model: torch.nn.Module, train_x: np.ndarray) -> Landscape:
    """``model``'s confidence max_k p_k over [−LANDSCAPE_EXTENT, LANDSCAPE_EXTENT]², on its device."""
    grid = np.linspace(-LANDSCAPE_EXTENT, LANDSCAPE_EXTENT, LANDSCAPE_POINTS)
    xx, yy = np.meshgrid(grid, grid)
    points = torch.from_numpy(np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32))  # (G², 2)
    device = next(model.parameters(), torch.empty(0)).device
    confidence = model.eval()(points.to(device)).max(dim=1).values.float().cpu().numpy()  # (G²,)
    return Landscape(grid, confidence.reshape(xx.shape), np.asarray(train_x)[::20])


@torch.no_grad()
def embedding_plane_of(classifier: torch.nn.Module, x: torch.Tensor, labels: np.ndarray) -> EmbeddingPlane:
    """The embeddings of ``x`` (n, ...) and the class centres of ``classifier``'s distance head, in the
    embeddings' 2-D PCA plane (an SVD in float64)."""
    device = next(classifier.parameters()).device
    embeddings = classifier.eval().embed(x.to(device)).double().cpu().numpy()  # (n, D)
    centres = classifier.head.centres.detach().double().cpu().numpy()  # (K, D)
    mean = embeddings.mean(axis=0)
    _, _, vt = np.linalg.svd(embeddings - mean, full_matrices=False)
    return EmbeddingPlane((embeddings - mean) @ vt[:2].T, (centres - mean) @ vt[:2].T, np.asarray(labels))
