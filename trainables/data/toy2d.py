"""The paper's 2-D toy problem (Appendix E.1).

Ten classes of 1000 training points each; class j is drawn from
N(μ_j, 2I) with μ_j = 20 (cos 2πj/10, sin 2πj/10). Inputs are left unnormalised, as in the paper.

Validation and test points are fresh draws from the same distribution (100 and 200 per class): the
distribution is known, so there is no need to shrink the paper's training set to hold some out.
OOD sets are rings far from the data, at radius 60 and 200, where the paper's Figure 1 shows softmax
staying confident and one-vs-all DM not.

Shift, adapted from two CIFAR-10-C corruptions with their published intensities 1–5 (the paper has no
shift experiment on this data): ``gaussian_noise`` adds N(0, (c·SPAN)²) to each coordinate and
``contrast`` pulls the points towards their mean by the factor c, where SPAN, the data's extent,
plays the part of an image's [0, 1] value range.
"""

from __future__ import annotations

import functools
import zlib

import numpy as np
import torch

from trainables.data import Dataset, Split
from trainables.data.corruptions import CONTRAST_FACTOR, GAUSSIAN_NOISE_STD

NUM_CLASSES = 10
RADIUS = 20.0
VARIANCE = 2.0  # covariance 2I
TRAIN_PER_CLASS = 1000
VAL_PER_CLASS = 100
TEST_PER_CLASS = 200
OOD_RADII = (60.0, 200.0)
OOD_POINTS_PER_RING = 1000
SPAN = 2 * (RADIUS + 3 * np.sqrt(VARIANCE))  # the data's extent, ≈ 48.5: the analogue of [0, 1] for pixels
SHIFTS = ("gaussian_noise", "contrast")


def class_centres() -> np.ndarray:
    """μ_j = 20 (cos 2πj/10, sin 2πj/10), (10, 2)."""
    angles = 2 * np.pi * np.arange(NUM_CLASSES) / NUM_CLASSES
    return RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def sample(per_class: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` points of every class: x (10·n, 2) float32, y (10·n,) int64."""
    centres = class_centres()
    y = np.repeat(np.arange(NUM_CLASSES), per_class)
    x = centres[y] + rng.normal(scale=np.sqrt(VARIANCE), size=(len(y), 2))
    return x.astype(np.float32), y.astype(np.int64)


def ring(radius: float, n: int = OOD_POINTS_PER_RING) -> np.ndarray:
    """``n`` evenly spaced points on a circle around the origin, (n, 2)."""
    angles = 2 * np.pi * np.arange(n) / n
    return (radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)).astype(np.float32)


def shift_points(x: np.ndarray, corruption: str, intensity: int, seed: int) -> np.ndarray:
    """The toy data under a shift of ``SHIFTS`` at intensity 1–5, reproducibly; (N, 2) float32."""
    if corruption == "gaussian_noise":
        rng = np.random.default_rng([seed, zlib.crc32(corruption.encode()), intensity])
        shifted = x + rng.normal(scale=GAUSSIAN_NOISE_STD[intensity - 1] * SPAN, size=x.shape)
    elif corruption == "contrast":
        mean = x.mean(axis=0, keepdims=True)
        shifted = (x - mean) * CONTRAST_FACTOR[intensity - 1] + mean
    else:
        raise ValueError(f"unknown toy shift {corruption!r}; choose from: {', '.join(SHIFTS)}")
    return shifted.astype(np.float32)


def load_toy2d(seed: int = 0) -> Dataset:
    """The toy dataset; train, validation and test use independent streams of ``seed``."""
    streams = np.random.SeedSequence(seed).spawn(3)
    splits = [
        sample(n, np.random.default_rng(s)) for n, s in zip((TRAIN_PER_CLASS, VAL_PER_CLASS, TEST_PER_CLASS), streams)
    ]
    train, val, test = (Split(torch.from_numpy(x), torch.from_numpy(y)) for x, y in splits)

    @functools.cache
    def shifted(corruption: str, intensity: int) -> torch.Tensor:
        return torch.from_numpy(shift_points(splits[2][0], corruption, intensity, seed))

    return Dataset(
        name="toy2d",
        class_names=[f"class {j}" for j in range(NUM_CLASSES)],
        train=train,
        val=val,
        test=test,
        ood={f"ring_r{int(r)}": torch.from_numpy(ring(r)) for r in OOD_RADII},
        shift_corruptions=SHIFTS,
        shifted=shifted,
        extras={"centres": class_centres()},
    )
