"""CIFAR-10 and CIFAR-100 in torchvision's on-disk format (the "python version" pickles).

``<data_dir>/cifar-10-batches-py/{data_batch_1..5,test_batch}`` and
``<data_dir>/cifar-100-python/{train,test}``: each a pickle of ``data`` (N, 3072) uint8, rows of
R, G, B planes, and the labels (``labels``, or ``fine_labels`` for CIFAR-100). The published files
are Python 2 pickles; they are read with ``encoding="latin1"``, as torchvision reads them.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from trainables.data import Dataset, DatasetNotAvailable, Split, data_root, stratified_split

# name -> (folder, training files, test file, label key)
CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "labels"),
    "cifar100": ("cifar-100-python", ["train"], "test", "fine_labels"),
}


def cifar_data_dir(name: str, data_dir: str | Path | None) -> Path:
    """``data_dir``, else $OVATUNE_DATA_DIR (see ``trainables.data.data_root``)."""
    return data_root(name, data_dir, f"{CIFAR_FILES[name][0]}/")


def cifar_paths(name: str, data_dir: str | Path, train: bool) -> list[Path]:
    """The files of one CIFAR split, checked to exist (nothing is read).

    Raises:
        DatasetNotAvailable: some are not under ``data_dir``; the message names the paths looked at
            and how to get them.
    """
    if name not in CIFAR_FILES:
        raise ValueError(f"unknown CIFAR dataset {name!r}; choose from: {', '.join(CIFAR_FILES)}")
    folder, train_files, test_file, _ = CIFAR_FILES[name]
    root = Path(data_dir).expanduser() / folder
    paths = [root / f for f in (train_files if train else [test_file])]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DatasetNotAvailable(
            f"{name} not found: looked for {', '.join(missing)}. Get it with "
            f"`python -c \"import torchvision; torchvision.datasets.{name.upper()}('{data_dir}', train={train}, "
            f'download=True)"` on a machine with internet access, or copy the extracted '
            f"{folder}/ folder of https://www.cs.toronto.edu/~kriz/cifar.html into {data_dir}"
        )
    return paths


def check_cifar(name: str, data_dir: str | Path | None) -> None:
    """Both splits' files of ``name`` exist under ``data_dir`` (else $OVATUNE_DATA_DIR); nothing is read.

    Raises:
        DatasetNotAvailable: they do not; the message names the paths and how to get them.
    """
    data_dir = cifar_data_dir(name, data_dir)
    for train in (False, True):
        cifar_paths(name, data_dir, train)


def download_cifar(name: str, data_dir: str | Path | None) -> None:
    """Fetch ``name``, the other CIFAR (its OOD set) and SVHN's test split into ``data_dir`` with
    torchvision's ``download=True`` (checked against torchvision's MD5 sums), in the layout the
    loaders read. Files already there are not fetched again.

    Raises:
        DatasetNotAvailable: a download failed.
    """
    import torchvision

    root = str(cifar_data_dir(name, data_dir))
    classes = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}
    try:
        for cifar in (name, OOD_PAIRS[name][0]):
            classes[cifar](root, train=True, download=True)
        torchvision.datasets.SVHN(f"{root}/svhn", split="test", download=True)
    except (OSError, RuntimeError) as error:  # URLError is an OSError; torchvision raises RuntimeError
        raise DatasetNotAvailable(f"downloading {name} into {root} failed: {error}") from error


def read_cifar(name: str, data_dir: str | Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 32, 32, 3) and labels int64 (N,) of one CIFAR split.

    Raises:
        DatasetNotAvailable: see ``cifar_paths``.
    """
    paths = cifar_paths(name, data_dir, train)
    label_key = CIFAR_FILES[name][3]
    images, labels = [], []
    for path in paths:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="latin1")  # Python 2 pickles, read as torchvision reads them
        images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def write_cifar(name: str, data_dir: str | Path, images: np.ndarray, labels: np.ndarray, train: bool) -> Path:
    """Write images (N, 32, 32, 3) uint8 and labels as one split in the same format, the training
    split spread over CIFAR-10's five batch files (for tests and benchmarks, which cannot download
    CIFAR). Returns the folder written."""
    folder, train_files, test_file, label_key = CIFAR_FILES[name]
    root = Path(data_dir) / folder
    root.mkdir(parents=True, exist_ok=True)
    files = train_files if train else [test_file]
    parts = np.array_split(np.arange(len(images)), len(files))
    for file, part in zip(files, parts):
        data = np.ascontiguousarray(images[part].transpose(0, 3, 1, 2)).reshape(len(part), -1)
        with open(root / file, "wb") as f:
            pickle.dump({"data": data, label_key: [int(v) for v in labels[part]]}, f)
    return root


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
VAL_FRACTION = 0.1  # of the training set, stratified and seeded (DESIGN §5)
# the other CIFAR is OOD for each, as is SVHN's test split (paper Tables S2, S3)
OOD_PAIRS = {"cifar10": ("cifar100", "svhn"), "cifar100": ("cifar10", "svhn")}


def class_names(name: str, data_dir: str | Path) -> list[str]:
    """The label names from the dataset's own meta file, else CIFAR-10's or "class i"."""
    folder = Path(data_dir).expanduser() / CIFAR_FILES[name][0]
    meta, key = (folder / "batches.meta", "label_names") if name == "cifar10" else (folder / "meta", "fine_label_names")
    if meta.is_file():
        with open(meta, "rb") as f:
            return list(pickle.load(f, encoding="latin1")[key])
    return CIFAR10_CLASSES if name == "cifar10" else [f"class {i}" for i in range(100)]


def read_svhn_test(data_dir: str | Path) -> np.ndarray:
    """SVHN's test images, uint8 (26 032, 32, 32, 3), from torchvision's ``test_32x32.mat``.

    Raises:
        DatasetNotAvailable: the file is in neither ``<data_dir>/svhn/`` nor ``<data_dir>/``.
    """
    from scipy.io import loadmat

    candidates = [
        Path(data_dir).expanduser() / "svhn" / "test_32x32.mat",
        Path(data_dir).expanduser() / "test_32x32.mat",
    ]
    for path in candidates:
        if path.is_file():
            return np.ascontiguousarray(loadmat(path)["X"].transpose(3, 0, 1, 2))
    raise DatasetNotAvailable(
        f"SVHN (the OOD set) not found: looked for {' and '.join(map(str, candidates))}. Get it with "
        f"`python -c \"import torchvision; torchvision.datasets.SVHN('{Path(data_dir) / 'svhn'}', split='test', "
        f'download=True)"` on a machine with internet access'
    )


def _nchw(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) → uint8 (N, C, H, W): the model inputs, kept as bytes (augmented on the device)."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


class LazyOOD(Mapping):
    """OOD sets read on first use: training never needs them, evaluation reads each once."""

    def __init__(self, loaders: dict[str, Callable[[], torch.Tensor]]):
        self._loaders, self._cache = loaders, {}

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._cache:
            self._cache[name] = self._loaders[name]()
        return self._cache[name]

    def __iter__(self):
        return iter(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)


def load_cifar(name: str, data_dir: str | None, seed: int = 0) -> Dataset:
    """CIFAR-10 or CIFAR-100 from ``data_dir`` (or $OVATUNE_DATA_DIR): splits, OOD sets and CIFAR-C shifts.

    Inputs stay uint8 (N, 3, 32, 32); the networks scale them to [−1, 1] and training augments them
    on the device (``trainables.data.augment``). Shifted test sets come from
    ``<data_dir>/CIFAR-10-C`` (published) or ``<data_dir>/CIFAR-100-C`` (``ovatune corrupt cifar100``).
    """
    from trainables.data.corrupted_sets import CORRUPTED_SETS

    data_dir = cifar_data_dir(name, data_dir)
    train_images, train_labels = read_cifar(name, data_dir, train=True)
    test_images, test_labels = read_cifar(name, data_dir, train=False)
    keep, held_out = stratified_split(train_labels, VAL_FRACTION, seed)

    def split(images: np.ndarray, labels: np.ndarray) -> Split:
        return Split(_nchw(images), torch.from_numpy(labels))

    corrupted = CORRUPTED_SETS[name]

    def shifted(corruption: str, intensity: int) -> torch.Tensor:
        path = Path(data_dir).expanduser() / corrupted.folder / f"{corruption}.npy"
        if not path.is_file():
            how = (f"`ovatune corrupt {name} --data-dir {data_dir}`" if name == "cifar100"
                   else "the published CIFAR-10-C (https://zenodo.org/record/2535967), or `ovatune corrupt cifar10`")  # fmt: skip
            raise DatasetNotAvailable(f"{path} not found: the shifted test sets of {name} come from {how}")
        block = np.load(path, mmap_mode="r")[(intensity - 1) * len(test_labels) : intensity * len(test_labels)]
        return _nchw(np.asarray(block))

    other, svhn = OOD_PAIRS[name]
    ood = LazyOOD(
        {
            other: lambda: _nchw(read_cifar(other, data_dir, train=False)[0]),
            svhn: lambda: _nchw(read_svhn_test(data_dir)),
        }
    )
    return Dataset(
        name=name,
        class_names=class_names(name, data_dir),
        train=split(train_images[keep], train_labels[keep]),
        val=split(train_images[held_out], train_labels[held_out]),
        test=split(test_images, test_labels),
        ood=ood,
        shift_corruptions=corrupted.corruptions,
        shifted=shifted,
        preprocessing="images_0_255_nhwc_unscaled",
        augmentation="pad_crop_flip",
    )
