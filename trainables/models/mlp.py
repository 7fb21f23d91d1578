"""Fully connected bodies: the paper's toy network (2 × 16 units) and the digits demo network."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """Flatten, then ``Linear → ReLU`` per hidden layer; the last hidden layer is the embedding.

    Args:
        in_features: size of the flattened input.
        hidden: widths of the hidden layers; ``hidden[-1]`` is the embedding dimension.
    """

    def __init__(self, in_features: int, hidden: Sequence[int]):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.layers = nn.Sequential(*layers)
        self.embedding_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # (B, D)
