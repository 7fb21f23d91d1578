"""CIFAR-10 and CIFAR-100 in torchvision's on-disk format (the "python version" pickles).

``<data_dir>/cifar-10-batches-py/{data_batch_1..5,test_batch}`` and
``<data_dir>/cifar-100-python/{train,test}``: each a pickle of ``data`` (N, 3072) uint8, rows of
R, G, B planes, and the labels (``labels``, or ``fine_labels`` for CIFAR-100).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from trainables.data import DatasetNotAvailable

# name -> (folder, training files, test file, label key)
CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", b"labels"),
    "cifar100": ("cifar-100-python", ["train"], "test", b"fine_labels"),
}


def read_cifar(name: str, data_dir: str | Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 32, 32, 3) and labels int64 (N,) of one CIFAR split.

    Raises:
        DatasetNotAvailable: the files are not under ``data_dir``; the message names the path looked
            at and how to get them.
    """
    if name not in CIFAR_FILES:
        raise ValueError(f"unknown CIFAR dataset {name!r}; choose from: {', '.join(CIFAR_FILES)}")
    folder, train_files, test_file, label_key = CIFAR_FILES[name]
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
    images, labels = [], []
    for path in paths:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def write_cifar(name: str, data_dir: str | Path, images: np.ndarray, labels: np.ndarray, train: bool) -> Path:
    """Write images (N, 32, 32, 3) uint8 and labels as one split in the same format (for tests and
    benchmarks, which cannot download CIFAR). Returns the file written."""
    folder, train_files, test_file, label_key = CIFAR_FILES[name]
    path = Path(data_dir) / folder / (train_files[0] if train else test_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), -1)
    with open(path, "wb") as f:
        pickle.dump({b"data": data, label_key: [int(v) for v in labels]}, f)
    return path
