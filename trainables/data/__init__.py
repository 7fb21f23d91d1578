"""Datasets as in-memory tensors, one row per dataset in ``DATASETS``: load, check files, download.

Every loader returns a :class:`Dataset`: train / validation / test splits as model inputs, the
out-of-distribution (OOD) sets that evaluation scores against the test split, and, where the data
has images, shifted copies of the test split (corruption × intensity 1–5).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from trainables.cache import cached_arrays

if TYPE_CHECKING:  # torch is imported where a tensor is touched: the CLI reads DATASETS without it
    import torch

    from trainables.data.imagenet import ImageFiles


class DatasetNotAvailable(RuntimeError):
    """A dataset the experiment needs is missing; the message says where we looked and what to do."""


def data_root(name: str, data_dir: str | Path | None, holds: str) -> Path:
    """``data_dir``, else $OVATUNE_DATA_DIR, where dataset ``name`` is read from.

    Raises:
        DatasetNotAvailable: neither is set; the message says what the folder must hold.
    """
    data_dir = data_dir or os.environ.get("OVATUNE_DATA_DIR")
    if not data_dir:
        raise DatasetNotAvailable(
            f"{name} is read from disk: pass --data-dir (or set OVATUNE_DATA_DIR) to the folder that holds {holds}"
        )
    return Path(data_dir).expanduser()


@dataclass
class Split:
    """Model inputs ``x`` (N, ...) and integer labels ``y`` (N,).

    ``x`` is a tensor (float features, or uint8 images augmented on the device), or, for data too
    large for memory (ImageNet), :class:`~trainables.data.imagenet.ImageFiles` that DataLoader workers
    decode; :func:`input_batches` iterates either.
    """

    x: torch.Tensor | ImageFiles
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: torch.Tensor) -> Split:
        """The examples at ``index`` (files stay files: only their list is cut).

        Args:
            index: positions in the split, int64 (M,).
        """
        import torch

        x = self.x[index] if isinstance(self.x, torch.Tensor) else self.x.subset(index.tolist())
        return Split(x, self.y[index])

    def to(self, device: torch.device) -> Split:
        """The split with its tensors on ``device`` (files stay files: their batches move later)."""
        import torch

        x = self.x.to(device) if isinstance(self.x, torch.Tensor) else self.x
        return Split(x, self.y.to(device))


def take(x: torch.Tensor | ImageFiles, index: torch.Tensor) -> torch.Tensor:
    """The inputs at ``index`` as one tensor (B, ...), decoded when they are files."""
    import torch

    if isinstance(x, torch.Tensor):
        return x[index]
    return next(iter(x.loader([index.tolist()], workers=0, seed=0)))[0]


def input_batches(x: torch.Tensor | ImageFiles, batch_size: int, workers: int = 0) -> Iterator[torch.Tensor]:
    """Consecutive batches of inputs, in order: slices of a tensor, or decoded batches of files
    (``workers`` DataLoader processes)."""
    import torch

    if isinstance(x, torch.Tensor):
        yield from x.split(batch_size)
    else:
        yield from x.batches(batch_size, workers)


# The shift benchmark's intensities (Hendrycks & Dietterich, 2019: CIFAR-10-C, ImageNet-C): every
# corruption at 1 (mildest) to 5; the published parameter tables have one entry per intensity.
INTENSITIES = (1, 2, 3, 4, 5)


@dataclass
class Dataset:
    """One experiment's data, ready for training and evaluation.

    Attributes:
        name: the dataset's registry key.
        class_names: one name per class; K = len(class_names).
        train, val, test: the splits.
        ood: named sets of OOD inputs (no labels), scored against ``test``.
        shift_corruptions: the corruption names ``shifted`` accepts.
        shifted: ``shifted(corruption, intensity)`` gives the test inputs under that shift, for each
            intensity of ``INTENSITIES`` (labels are ``test.y``); None when the data has no notion of shift.
        extras: dataset-specific things figures need (e.g. the toy problem's class centres).
        preprocessing: how raw inputs become model inputs, a key of
            ``serving.bundle.PREPROCESSING``; exported models include it.
        augmentation: training-time augmentation of a batch on the device, a key of
            ``trainables.data.augment.AUGMENTATIONS``, or None.
        tokenizer: for text, the tokenizer that made the token ids (``tokenizers`` JSON); it is
            saved with every checkpoint and export.
        model_settings: what the network must know of the data (e.g. ``vocab_size``); added to
            the trial's config.
        source: where the data was read from: the data folder, or the loader of an embedded
            dataset (set by :func:`load_dataset`; recorded with each run's dataset inputs).
    """

    name: str
    class_names: list[str]
    train: Split
    val: Split
    test: Split
    ood: dict[str, torch.Tensor]
    shift_corruptions: tuple[str, ...] = ()
    shifted: Callable[[str, int], torch.Tensor] | None = None
    extras: dict = field(default_factory=dict)
    preprocessing: str = "identity"
    augmentation: str | None = None
    tokenizer: str | None = None
    model_settings: dict = field(default_factory=dict)
    source: str = ""
    data_seed: int = 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out) with ``fraction`` of every class held out, reproducibly: scikit-learn's
    stratified ``train_test_split``, kept in the cache folder by a digest of the labels, the fraction,
    the seed and scikit-learn's version. Importing ``sklearn.model_selection`` took every process
    that loads a dataset (each trial's actor, each evaluation task) 1.1 s; the kept split, milliseconds."""
    y = np.ascontiguousarray(y)
    version = importlib.metadata.version("scikit-learn")
    digest = hashlib.sha256(y.tobytes() + f"{y.dtype} {fraction!r} {seed} {version}".encode()).hexdigest()[:20]

    def split() -> dict[str, np.ndarray]:
        from sklearn.model_selection import train_test_split  # slow import: only datasets that split need it

        keep, held_out = train_test_split(np.arange(len(y)), test_size=fraction, stratify=y, random_state=seed)
        return {"keep": np.sort(keep), "held_out": np.sort(held_out)}

    arrays = cached_arrays(f"splits/{digest}", split)
    return arrays["keep"], arrays["held_out"]


def _imported(module: str, function: str, *leading: str, takes_data_dir: bool = True) -> Callable:
    """``trainables.data.<module>.<function>``, imported when first called, with ``leading``
    arguments first (e.g. which CIFAR). Importing late keeps each dataset's dependencies (scikit-learn,
    torchvision, tokenizers) out of every other dataset's trials, and lets each per-dataset module
    import this one's ``Dataset`` and ``Split``. An embedded loader has no files to find, so
    ``takes_data_dir=False`` drops the ``data_dir`` argument every row's ``load`` is called with."""

    def call(*args):
        target = getattr(importlib.import_module(f"trainables.data.{module}"), function)
        return target(*leading, *(args if takes_data_dir else args[1:]))

    call.__qualname__ = f"{module}.{function}"  # what a traceback or repr shows
    return call


@dataclass(frozen=True)
class DatasetSource:
    """Where one dataset comes from: a row of ``DATASETS``.

    Attributes:
        load: ``load(data_dir, seed)``, the :class:`Dataset`; the seed fixes its splits.
        check: ``check(data_dir)`` raises :class:`DatasetNotAvailable`, naming the paths it looked
            at and how to get the data, when files are missing. None: embedded (no files).
        download: ``download(data_dir)`` fetches the files where the publisher allows it (files
            already there are not fetched again), else raises saying where to get them. None:
            embedded.
    """

    load: Callable[[str | None, int], Dataset]
    check: Callable[[str | None], None] | None = None
    download: Callable[[str | None], None] | None = None

    @property
    def embedded(self) -> bool:
        """Ships with ovatune's dependencies: no --data-dir, nothing to download."""
        return self.check is None


# One row per dataset: how to load it, check its files, download them.
DATASETS: dict[str, DatasetSource] = {
    "toy2d": DatasetSource(_imported("toy2d", "load_toy2d", takes_data_dir=False)),
    "digits": DatasetSource(_imported("digits", "load_digits", takes_data_dir=False)),
    **{
        name: DatasetSource(
            _imported("cifar", "load_cifar", name),
            _imported("cifar", "check_cifar", name),
            _imported("cifar", "download_cifar", name),
        )
        for name in ("cifar10", "cifar100")
    },
    "imagenet": DatasetSource(
        _imported("imagenet", "load_imagenet"),
        _imported("imagenet", "imagenet_root"),
        _imported("imagenet", "download_imagenet"),
    ),
    "clinc": DatasetSource(
        _imported("clinc", "load_clinc"), _imported("clinc", "clinc_source"), _imported("clinc", "download_clinc")
    ),
}


def dataset_source(name: str) -> DatasetSource:
    """The row of ``DATASETS`` for ``name``.

    Raises:
        DatasetNotAvailable: no such dataset; the message lists those there are.
    """
    if name not in DATASETS:
        raise DatasetNotAvailable(
            f"no loader for dataset {name!r} in this version of ovatune; datasets available: {', '.join(DATASETS)}"
        )
    return DATASETS[name]


def check_available(name: str, data_dir: str | None, download: bool = False) -> None:
    """Fail fast, before any trial starts, when an on-disk dataset's files are missing.

    Args:
        name: a key of ``DATASETS``.
        data_dir: where on-disk datasets live (else $OVATUNE_DATA_DIR).
        download: fetch what is missing first, where the dataset can be downloaded.

    Raises:
        DatasetNotAvailable: no loader for ``name``, its files are not under ``data_dir``, or they
            cannot be downloaded.
    """
    source = dataset_source(name)
    if source.embedded:
        return
    if download:
        source.download(data_dir)
    source.check(data_dir)


def import_loader(name: str) -> None:
    """Import the module behind ``name``'s loader (with its scikit-learn, torchvision or tokenizers:
    up to 2 s) ahead of the first load; the driver does it while Ray starts."""
    module = dataset_source(name).load.__qualname__.split(".")[0]  # "<module>.<function>": see _imported
    importlib.import_module(f"trainables.data.{module}")


def load_dataset(name: str, data_dir: str | None = None, seed: int = 0) -> Dataset:
    """Load a registered dataset.

    Args:
        name: a key of ``DATASETS``.
        data_dir: where on-disk datasets live (unused by the embedded ones).
        seed: seeds the splits (and the toy data itself), so that every trial and the evaluation
            see the same split.

    Raises:
        DatasetNotAvailable: no loader for ``name`` exists in this version.
    """
    source = dataset_source(name)
    data = source.load(data_dir, seed)
    if not data.source:
        where = data_dir or os.environ.get("OVATUNE_DATA_DIR")
        embedded = f"trainables.data.{source.load.__qualname__}"
        data.source = embedded if source.embedded or not where else str(Path(where).expanduser().absolute())
    data.data_seed = int(seed)
    return data
