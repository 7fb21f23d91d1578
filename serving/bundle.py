"""The serving bundle: a champion as a model that takes raw inputs and says "none of the above".

``ServingModel`` wraps a trained classifier with its dataset's preprocessing and a confidence
threshold. From raw inputs (B, ...) it returns

- ``probabilities`` (B, K): the loss's evaluation probabilities (softmax, sigmoid or 2·sigmoid);
- ``confidence`` (B,): max_k p_k;
- ``prediction`` (B,): argmax_k p_k;
- ``none_of_the_above`` (B,): confidence below the threshold chosen on the validation split, the
  answer a one-vs-all model is good at giving.

The bundle (weights.pt, the checkpoint's meta.json, serving.json with the hashes of both) is what
the registered MLflow model (``serving.pyfunc``) loads; the torch.export, TorchScript and ONNX exports
trace the same ``ServingModel``. Nothing here unpickles: weights load with ``torch.load(weights_only=True)``
and every file is checked against its recorded SHA-256 first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trainables.checkpoint import CHECKPOINT_META
from trainables.checksums import check_files, sha256
from trainables.models import Classifier, build_classifier

BUNDLE_ARTIFACT = "bundle"  # the bundle's name among a registered pyfunc model's artifacts
SERVING_FILE = "serving.json"  # metadata: classes, loss, preprocessing, threshold, file hashes
MANIFEST_FILE = "manifest.json"  # an export's files and their SHA-256
WEIGHTS_FILE = "weights.pt"  # the model's state dict only
BUNDLE_META = CHECKPOINT_META  # the checkpoint's meta.json (config, classes, tokenizer), copied as it is
TOKENIZER_FILE = "tokenizer.json"  # text models' exports: the tokenizer that makes their token ids
OUTPUTS = ("probabilities", "confidence", "prediction", "none_of_the_above")
KEEP_FRACTION = 0.95  # the threshold keeps this share of in-distribution validation examples


class ImagesFrom0To255(nn.Module):
    """Raw images (B, H, W, C), values 0–255 as stored → model inputs (B, C, H, W) in [0, 1]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2) / 255.0


class ChannelsFirst(nn.Module):
    """Raw images (B, H, W, C), values 0–255 → (B, C, H, W) 0–255; the network scales them itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2)


class TokenIds(nn.Module):
    """Token ids (B, L), sent as numbers → int64 ids (text is tokenized before, with the shipped tokenizer)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.round().long()


# preprocessing name -> (raw → model input module, model input → raw). Each dataset names one.
PREPROCESSING = {
    "identity": (nn.Identity, lambda x: x),
    "images_0_255_nhwc": (ImagesFrom0To255, lambda x: torch.round(x * 255.0).permute(0, 2, 3, 1)),
    "images_0_255_nhwc_unscaled": (ChannelsFirst, lambda x: x.float().permute(0, 2, 3, 1)),
    "token_ids": (TokenIds, lambda x: x.float()),
}


def raw_inputs(preprocessing: str, model_inputs: torch.Tensor) -> torch.Tensor:
    """The raw inputs a user would send for these model inputs (the inverse of the preprocessing)."""
    return PREPROCESSING[preprocessing][1](model_inputs).contiguous()


class ServingModel(nn.Module):
    """Raw inputs → (probabilities, confidence, prediction, none_of_the_above); see the module doc."""

    def __init__(self, classifier: Classifier, preprocessing: str, threshold: float):
        super().__init__()
        self.preprocess = PREPROCESSING[preprocessing][0]()
        self.classifier = classifier.eval()
        self.register_buffer("threshold", torch.tensor(float(threshold)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        probabilities = self.classifier.probabilities(self.preprocess(x))  # (B, K)
        confidence, prediction = probabilities.max(dim=1)  # (B,), (B,)
        return probabilities, confidence, prediction, confidence < self.threshold


def choose_threshold(validation_confidence: np.ndarray, keep: float = KEEP_FRACTION) -> float:
    """The largest threshold t such that at least ``keep`` of the validation confidences are ≥ t."""
    ordered = np.sort(np.asarray(validation_confidence, dtype=np.float64))
    return float(ordered[int(np.floor((1.0 - keep) * len(ordered)))])


def write_serving_bundle(directory: str | Path, classifier: Classifier, meta: dict[str, Any], **info: Any) -> Path:
    """Write weights.pt (state dict only), the checkpoint's meta.json and serving.json (``info`` plus
    the hashes of the other two) into ``directory``; returns it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(classifier.state_dict(), directory / WEIGHTS_FILE)
    (directory / BUNDLE_META).write_text(json.dumps(meta, indent=1))
    info["sha256"] = {name: sha256(directory / name) for name in (WEIGHTS_FILE, BUNDLE_META)}
    (directory / SERVING_FILE).write_text(json.dumps(info, indent=1))
    return directory


def load_serving_bundle(directory: str | Path) -> tuple[ServingModel, dict[str, Any]]:
    """Check and load what ``write_serving_bundle`` wrote; returns (model, serving info)."""
    directory = Path(directory)
    info = json.loads((directory / SERVING_FILE).read_text())
    check_files(directory, info["sha256"])
    meta = json.loads((directory / BUNDLE_META).read_text())
    classifier = build_classifier(tuple(meta["input_shape"]), len(meta["class_names"]), meta["config"])
    classifier.load_state_dict(torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    return ServingModel(classifier, info["preprocessing"], info["threshold"]).eval(), info


def as_raw_batch(model_input: Any, raw_shape: list[int]) -> torch.Tensor:
    """A DataFrame (one row per example, the values flattened), an array, a list or a dict with one
    array → float32 (B, *raw_shape)."""
    if isinstance(model_input, dict):
        (model_input,) = model_input.values()
    if hasattr(model_input, "to_numpy"):
        model_input = model_input.to_numpy()
    array = np.array(model_input, dtype=np.float32)  # a copy: inputs may be read-only
    return torch.from_numpy(array.reshape(-1, *raw_shape))
