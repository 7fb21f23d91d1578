"""Network bodies and the classifier that puts a loss's head on top of one.

A body maps inputs to the penultimate embedding f (B, D) and exposes ``embedding_dim``; the
classifier adds the head chosen by the loss registry. New architectures register one factory in
``MODELS``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from trainables.losses import get_loss
from trainables.models.mlp import MLP
from trainables.models.resnet import ResNet50, ResNetV1, WideResNet
from trainables.trial_config import setting, upgraded


def build_mlp(input_shape: tuple[int, ...], config: dict[str, Any]) -> nn.Module:
    """MLP body; ``config["hidden"]`` lists the hidden widths."""
    return MLP(math.prod(input_shape), config["hidden"])


def build_resnet20(input_shape: tuple[int, ...], config: dict[str, Any]) -> nn.Module:
    """ResNet-20 v1 for CIFAR; ``depth`` and ``width`` override 20 and 16."""
    return ResNetV1(input_shape[0], int(config.get("depth", 20)), int(config.get("width", 16)))


def build_wide_resnet28_10(input_shape: tuple[int, ...], config: dict[str, Any]) -> nn.Module:
    """WRN-28-10; ``depth``, ``widen`` and ``width`` override 28, 10 and 16."""
    return WideResNet(
        input_shape[0], int(config.get("depth", 28)), int(setting(config, "widen")), int(config.get("width", 16))
    )


def build_resnet50(input_shape: tuple[int, ...], config: dict[str, Any]) -> nn.Module:
    """ResNet-50 v1.5; ``width`` overrides the bottleneck width 64."""
    return ResNet50(int(config.get("width", 64)))


def build_bert_mini(input_shape: tuple[int, ...], config: dict[str, Any]) -> nn.Module:
    """BERT-Mini from scratch; the data sets ``vocab_size``, ``max_length`` and ``pad_id``, and
    ``width``, ``depth``, ``heads``, ``intermediate`` override 256, 4, 4, 1024."""
    from trainables.models.bert import BertBody  # transformers is imported only for text models

    return BertBody(
        vocab_size=int(config["vocab_size"]),
        max_length=int(config.get("max_length", input_shape[0])),
        pad_id=int(setting(config, "pad_id")),
        hidden=int(config.get("width", 256)),
        layers=int(config.get("depth", 4)),
        heads=int(setting(config, "heads")),
        intermediate=int(setting(config, "intermediate")),
    )


MODELS: dict[str, Callable[[tuple[int, ...], dict[str, Any]], nn.Module]] = {
    "mlp": build_mlp,
    "resnet20": build_resnet20,
    "wide_resnet28_10": build_wide_resnet28_10,
    "resnet50": build_resnet50,
    "bert_mini": build_bert_mini,
}


class Classifier(nn.Module):
    """A body followed by the head of a loss: ``forward`` gives logits (B, K).

    Args:
        body: maps inputs to embeddings (B, D) and has an ``embedding_dim`` attribute.
        num_classes: K.
        loss: a name from ``trainables.losses.LOSSES``.
    """

    def __init__(self, body: nn.Module, num_classes: int, loss: str):
        super().__init__()
        self.loss = get_loss(loss).name
        self.body = body
        self.head = get_loss(loss).head(body.embedding_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (B, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))  # (B, K)

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """The loss's evaluation probabilities, (B, K)."""
        return get_loss(self.loss).probabilities(self(x))


class ProbabilityModel(nn.Module):
    """What gets registered in MLflow: inputs → evaluation probabilities (B, K).

    Serving a model that outputs probabilities (not logits) means a user of the registered model
    cannot apply the wrong normalisation (softmax to a one-vs-all model, or forget ova_dm's 2·σ).
    """

    def __init__(self, classifier: Classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.probabilities(x)


def build_classifier(input_shape: tuple[int, ...], num_classes: int, config: dict[str, Any]) -> Classifier:
    """Build ``config["model"]`` with the head of ``config["loss"]`` (a config of an older store is upgraded)."""
    config = upgraded(config)
    name = config["model"]
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from: {', '.join(MODELS)}")
    return Classifier(MODELS[name](input_shape, config), num_classes, config["loss"])
