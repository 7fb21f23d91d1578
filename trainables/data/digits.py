"""scikit-learn's bundled 8×8 handwritten digits, the embedded image demo (no download).

Images are kept as uint8 (N, 8, 8, 1) with the 0–16 ink values scaled to 0–255, so that the same
corruption code as for CIFAR applies; model inputs are those images / 255 as float (N, 1, 8, 8).

Splits (stratified, seeded): 20% test, then 10% of the rest as validation (DESIGN §5), the remainder
training. OOD: 8×8 grayscale patches from the two photographs that ship with scikit-learn
(``load_sample_images``): 32×32 crops averaged down 4× to the digits' resolution, since the digits
themselves are 32×32 bitmaps averaged down the same way.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
from pathlib import Path

import numpy as np
import torch

from trainables.cache import cached_arrays
from trainables.data import INTENSITIES, Dataset, Split, corruptions, stratified_split
from trainables.data.corruptions import CORRUPTIONS, corrupt_small

TEST_FRACTION = 0.2
VAL_FRACTION = 0.1
OOD_PATCHES_PER_PHOTO = 500
PATCH = 32  # crop size in photo pixels, averaged down to 8×8


def to_model_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 8, 8, 1) → float32 (N, 1, 8, 8) in [0, 1]."""
    return images.permute(0, 3, 1, 2).float() / 255.0


@functools.cache  # read once per process: the digits and their OOD photos both need it
def sklearn_arrays() -> dict[str, np.ndarray]:
    """scikit-learn's digits (``images``, (1797, 8, 8) ink 0–16; ``target``; ``target_names``) and
    its two sample photographs (``photo_0``, ``photo_1``, (427, 640, 3) uint8), read through
    scikit-learn once per machine and scikit-learn version, then from the cache folder: importing
    ``sklearn.datasets`` took every process that loads the digits (each trial's actor, each
    evaluation task, promotion) 1.1 s, for 2.6 MB of arrays."""

    def read() -> dict[str, np.ndarray]:
        import sklearn.datasets

        bunch = sklearn.datasets.load_digits()
        photos = sklearn.datasets.load_sample_images().images
        return {"images": bunch.images, "target": bunch.target, "target_names": bunch.target_names} | {
            f"photo_{i}": photo for i, photo in enumerate(photos)
        }

    return cached_arrays(f"scikit-learn-{importlib.metadata.version('scikit-learn')}-digits", read)


def photo_patches(per_photo: int, seed: int) -> np.ndarray:
    """Grayscale 8×8 patches of the sample photographs, uint8 (2·per_photo, 8, 8, 1)."""
    rng = np.random.default_rng(seed)
    patches = []
    arrays = sklearn_arrays()
    for photo in (arrays["photo_0"], arrays["photo_1"]):  # (427, 640, 3) uint8 each
        gray = photo.astype(np.float64).mean(axis=2)
        rows = rng.integers(0, gray.shape[0] - PATCH, size=per_photo)
        cols = rng.integers(0, gray.shape[1] - PATCH, size=per_photo)
        crops = np.stack([gray[r : r + PATCH, c : c + PATCH] for r, c in zip(rows, cols)])
        small = crops.reshape(per_photo, 8, PATCH // 8, 8, PATCH // 8).mean(axis=(2, 4))  # (n, 8, 8)
        patches.append(small)
    return np.concatenate(patches)[..., None].astype(np.uint8)


def shifted_test_sets(test_images: torch.Tensor, seed: int) -> dict[str, np.ndarray]:
    """Every corruption of ``test_images`` (uint8 (N, 8, 8, 1)) at every intensity, as uint8 arrays
    of the same shape keyed ``<corruption>-<intensity>``: made once, then read from the cache folder.

    Why: making the 95 sets took every task that measures a digits model 2.5 s of its 3.7 s of
    measuring, again in every evaluation (each is a new Ray, so a new worker process). The cache key
    is a digest of what the sets depend on: the images, the seed, this file and the corruption
    code's source files, the frost textures, and the libraries it draws with (torch's generator,
    numpy, Pillow's JPEG).
    """
    key = hashlib.sha256(np.ascontiguousarray(test_images.numpy()).tobytes())
    versions = " ".join(importlib.metadata.version(name) for name in ("torch", "numpy", "pillow"))
    key.update(f"{seed} {versions}".encode())
    code = Path(corruptions.__file__).parent  # trainables/data/corruptions
    for source in [Path(__file__), *sorted(code.glob("*.py")), *sorted(code.with_name("frost").glob("*.png"))]:
        key.update(source.name.encode() + source.read_bytes())

    def make() -> dict[str, np.ndarray]:
        return {f"{name}-{intensity}": corrupt_small(test_images, name, intensity, seed).numpy()
                for name in CORRUPTIONS for intensity in INTENSITIES}  # fmt: skip

    return cached_arrays(f"digits-shifted/{key.hexdigest()[:20]}", make)


def load_digits(seed: int = 0) -> Dataset:
    """The digits dataset with its seeded stratified splits, photo-patch OOD set and shifts."""
    arrays = sklearn_arrays()
    images = np.round(arrays["images"] * (255.0 / 16.0)).astype(np.uint8)[..., None]  # (1797, 8, 8, 1)
    labels = arrays["target"].astype(np.int64)

    rest, test = stratified_split(labels, TEST_FRACTION, seed)
    train_in_rest, val_in_rest = stratified_split(labels[rest], VAL_FRACTION, seed)
    train, val = rest[train_in_rest], rest[val_in_rest]

    all_images = torch.from_numpy(images)
    all_labels = torch.from_numpy(labels)
    test_images = all_images[test]

    def split(index: np.ndarray) -> Split:
        return Split(to_model_input(all_images[index]), all_labels[index])

    @functools.cache  # made (or read) when first asked for: training never asks
    def shifted_sets() -> dict[str, np.ndarray]:
        return shifted_test_sets(test_images, seed)

    @functools.cache  # every champion is evaluated on the same shifted sets
    def shifted(corruption: str, intensity: int) -> torch.Tensor:
        if corruption not in CORRUPTIONS or intensity not in INTENSITIES:  # corrupt's own error, as before
            corrupt_small(test_images[:1], corruption, intensity, seed)
        return to_model_input(torch.from_numpy(shifted_sets()[f"{corruption}-{intensity}"]))

    ood_images = torch.from_numpy(photo_patches(OOD_PATCHES_PER_PHOTO, seed))
    return Dataset(
        name="digits",
        class_names=[str(int(n)) for n in arrays["target_names"]],
        train=split(train),
        val=split(val),
        test=split(test),
        ood={"photo_patches": to_model_input(ood_images)},
        shift_corruptions=tuple(CORRUPTIONS),
        shifted=shifted,
        preprocessing="images_0_255_nhwc",  # exported models take the 8×8 images, 0–255, channels last
    )
