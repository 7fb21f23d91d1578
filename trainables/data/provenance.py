"""What data a run used: one :class:`Provenance` per split or set, with a digest of its exact contents.

A trial reports the provenance of its training and validation splits with its first result, and
an evaluation that of the test split and the OOD sets it scored; the driver records them as MLflow
dataset inputs (``tuning.tracking.log_provenance``), so the MLflow UI's Dataset column shows which
data, split and digest every run saw. Two runs with the same digest saw the same examples in the
same order: a changed file, split seed or preprocessing changes it.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np
import torch

from trainables.data import Dataset, Split

DIGEST_CHARACTERS = 16  # of the SHA-256's hex: MLflow keeps up to 36, the UI shows them whole


@dataclass(frozen=True)
class Provenance:
    """One split (or OOD set) of one dataset, as a run used it.

    Attributes:
        dataset: the dataset's registry key (``digits``, ``cifar10``, ...).
        split: ``train``, ``validation``, ``test`` or ``ood``.
        name: what the MLflow UI lists: the dataset's key, or the OOD set's name.
        digest: the first ``DIGEST_CHARACTERS`` of the SHA-256 of the inputs and labels.
        num_examples: N.
        shape: one example's shape, e.g. (64,) or (3, 32, 32).
        dtype: the inputs' dtype, e.g. ``float32`` or ``uint8``.
        source: where the data was read from (a folder, or the module of an embedded dataset).
        data_seed: the seed of the split.
    """

    dataset: str
    split: str
    name: str
    digest: str
    num_examples: int
    shape: tuple[int, ...]
    dtype: str
    source: str
    data_seed: int

    def to_dict(self) -> dict:
        return {**asdict(self), "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, fields: dict) -> Provenance:
        return cls(**{**fields, "shape": tuple(fields["shape"])})


def content_digest(x: torch.Tensor | object, y: torch.Tensor | None = None) -> str:
    """The SHA-256 (shortened) of inputs ``x`` (N, ...) and labels ``y`` (N,): every byte of a tensor;
    for files (:class:`~trainables.data.imagenet.ImageFiles`), their paths and labels."""
    digest = hashlib.sha256()
    if isinstance(x, torch.Tensor):
        digest.update(str((tuple(x.shape), str(x.dtype))).encode())
        digest.update(np.ascontiguousarray(x.detach().cpu().numpy()).tobytes())
    else:  # files: a changed list or label changes the digest (hashing every image would read them all)
        digest.update("".join(f"{path}\t{label}\n" for path, label in x.samples).encode())
    if y is not None:
        digest.update(np.ascontiguousarray(y.detach().cpu().numpy()).tobytes())
    return digest.hexdigest()[:DIGEST_CHARACTERS]


def split_provenance(data: Dataset, split: str, part: Split | None = None) -> Provenance:
    """The provenance of ``data``'s ``split`` ("train", "validation" or "test"), or of ``part`` of it
    (the validation examples a trial limited itself to: ``val_examples``)."""
    part = part if part is not None else {"train": data.train, "validation": data.val, "test": data.test}[split]
    return _provenance(data, split, data.name, part.x, part.y)


def ood_provenance(data: Dataset, name: str) -> Provenance:
    """The provenance of ``data``'s OOD set ``name`` (inputs only: OOD sets have no labels)."""
    return _provenance(data, "ood", name, data.ood[name], None)


def _provenance(data: Dataset, split: str, name: str, x, y) -> Provenance:
    return Provenance(
        dataset=data.name,
        split=split,
        name=name,
        digest=content_digest(x, y),
        num_examples=int(x.shape[0]),
        shape=tuple(int(s) for s in x.shape[1:]),
        dtype=str(x.dtype).removeprefix("torch.") if isinstance(x, torch.Tensor) else "image files",
        source=data.source,
        data_seed=data.data_seed,
    )
