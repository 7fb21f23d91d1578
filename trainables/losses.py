"""The four parametrizations of class probabilities compared by the paper (DESIGN §4).

A loss, in this project, is three choices made on the penultimate embedding ``f`` (B, D) of a network:

    loss     logits z_k            training loss (per example)           probabilities at evaluation
    -------  --------------------  ------------------------------------  ---------------------------
    softmax  w_kᵀf + b_k           cross-entropy of softmax(z)           softmax(z)
    dm       −‖f − w_k‖₂           cross-entropy of softmax(z)           softmax(z)
    ova      w_kᵀf + b_k           Σ_k BCE-with-logits(z_k, onehot_k)    sigmoid(z)
    ova_dm   −‖f − w_k‖₂           Σ_k BCE-with-logits(z_k, onehot_k)    2·sigmoid(z)  (paper Eq. 6)

``LOSSES`` below is that table: the sweep, the evaluation and the tests read it. The CLI reads the
names and titles from ``trainables/loss_names.py`` instead, which imports no torch; this module
refuses to import when the two disagree.

Confidence is max_k p_k and the prediction argmax_k p_k for all four; one-vs-all probabilities need
not sum to one (that is the point: they can all be small, "none of the above").

Two choices the paper leaves to its reference code, made as there:

- The class centres w_k of a distance head are not weight-decayed: the L2 term (``l2``, spaces
  cifar100 and imagenet) applies to the body and to dense heads only
  (``trainables.optim.parameter_groups``), as the reference distance layer (``DisMax``) has no
  regularizer. Decay would pull every centre towards the origin of the embedding space.
- Distances are computed in float64 outside autocast (:class:`DistanceHead`), so bf16 training on
  CUDA learns from the same distances as float32 evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trainables.loss_names import LOSS_TITLES

# Added inside the square root of the distance so that its gradient stays finite when an embedding
# sits exactly on a class centre (d‖x‖/dx = x/‖x‖ is 0/0 there).
DISTANCE_EPS = 1e-12

# ----------------------------------------------------------------------------------------------
# Heads: embedding (B, D) -> logits (B, K)


class DenseHead(nn.Module):
    """Affine logits z_k = w_kᵀf + b_k (an ordinary ``nn.Linear``)."""

    def __init__(self, embedding_dim: int, num_classes: int):
        super().__init__()
        self.linear = nn.Linear(embedding_dim, num_classes)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.linear(f)  # (B, K)

    @property
    def centres(self) -> None:
        """A dense head has no class centres."""
        return None


class DistanceHead(nn.Module):
    """Distance logits z_k = −‖f − w_k‖₂ (Euclidean, not squared, no bias).

    The weights start at zero, as in the paper and Macêdo et al. (2019): every class centre begins
    at the origin of the embedding space and is pulled towards its class during training.
    """

    def __init__(self, embedding_dim: int, num_classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_classes, embedding_dim))  # (K, D)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        # ‖f − w‖² = ‖f‖² − 2fᵀw + ‖w‖² needs (B, K) memory instead of (B, K, D), but it cancels
        # catastrophically near a centre: with ‖f‖ ≈ 25 and f 0.05 from its centre, the distance
        # is off by up to 0.014 in float32 and by up to 2.4 when autocast runs the matmul in
        # bfloat16 (CUDA training) — and near their centres is where dm and ova_dm learn. So the
        # head leaves autocast and computes in float64, whatever the caller's precision: ≤ 1e-6 from
        # the exact distance there (tests/test_losses.py), at the cost of one small (B, D)·(D, K)
        # float64 matmul. (cdist's exact difference mode has no ONNX export; this does.)
        with torch.autocast(device_type=f.device.type, enabled=False):
            f64, w64 = f.double(), self.weight.double()  # (B, D), (K, D)
            squared = (
                f64.pow(2).sum(dim=1, keepdim=True)  # (B, 1)
                - 2.0 * f64 @ w64.t()  # (B, K)
                + w64.pow(2).sum(dim=1)  # (K,)
            ).clamp_min(0.0)  # rounding can make it slightly negative when f == w
            distances = torch.sqrt(squared + DISTANCE_EPS)  # (B, K)
        return -distances.to(torch.promote_types(f.dtype, torch.float32))  # (B, K): float32 (float64 in, float64 out)

    @property
    def centres(self) -> torch.Tensor:
        """The learned class centres w_k, (K, D)."""
        return self.weight


# ----------------------------------------------------------------------------------------------
# Losses: logits (B, K), integer labels (B,) -> scalar, the mean over the batch


def softmax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """−log softmax(z)_y, averaged over the batch (paper Eq. 2 and 4)."""
    return F.cross_entropy(logits, labels)


def one_vs_all_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Σ_k BCE-with-logits(z_k, onehot_k), averaged over the batch (paper Eq. 7).

    For ``ova_dm`` this trains plain sigmoid(z) although evaluation reports 2·sigmoid(z): this is
    what the paper's reference code does. Eq. 7 applied to Eq. 6 literally would need
    log(1 − 2σ(z)) = log tanh(‖f − w‖/2), which is −∞ at the class centre.
    """
    onehot = F.one_hot(labels, num_classes=logits.shape[1]).to(logits.dtype)  # (B, K)
    per_class = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")  # (B, K)
    return per_class.sum(dim=1).mean()


# ----------------------------------------------------------------------------------------------
# Probabilities at evaluation: logits (B, K) -> probabilities (B, K)


def softmax_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """softmax(z): sums to one over classes."""
    return torch.softmax(logits, dim=1)


def sigmoid_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """σ(z_k) per class, not renormalised."""
    return torch.sigmoid(logits)


def twice_sigmoid_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """2·σ(z_k) per class (paper Eq. 6): maps z ∈ (−∞, 0] to (0, 1], a distance of 0 to 1."""
    return 2.0 * torch.sigmoid(logits)


# ----------------------------------------------------------------------------------------------
# The registry


@dataclass(frozen=True)
class Loss:
    """One parametrization of class probabilities.

    Attributes:
        name: the key used everywhere (CLI, configs, MLflow, registered model names).
        title: the paper's name for it, for tables and figure legends.
        head: the class that turns embeddings (B, D) into logits (B, K).
        training_loss: the loss minimised in training, on (logits, labels).
        probabilities: evaluation probabilities from logits.
    """

    name: str
    title: str
    head: type[nn.Module]
    training_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    probabilities: Callable[[torch.Tensor], torch.Tensor]

    @property
    def is_distance(self) -> bool:
        return self.head is DistanceHead


LOSSES: dict[str, Loss] = {
    m.name: m
    for m in (
        # name      title             head          training loss          evaluation probabilities
        Loss("softmax", "Crossentropy", DenseHead, softmax_cross_entropy, softmax_probabilities),
        Loss("dm", "DM loss", DistanceHead, softmax_cross_entropy, softmax_probabilities),
        Loss("ova", "One-vs-all", DenseHead, one_vs_all_bce, sigmoid_probabilities),
        Loss("ova_dm", "One-vs-all DM", DistanceHead, one_vs_all_bce, twice_sigmoid_probabilities),
    )
}


# The CLI reads the names and titles without torch (trainables/loss_names.py): the two must agree.
if [(name, loss.title) for name, loss in LOSSES.items()] != list(LOSS_TITLES.items()):
    raise ImportError("trainables.loss_names.LOSS_TITLES must list exactly the losses of LOSSES, in order")


def get_loss(name: str) -> Loss:
    """Look a loss up by name, with an error that lists the valid names."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose from: {', '.join(LOSSES)}") from None
