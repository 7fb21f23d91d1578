"""Augmented CIFAR batches per second: ovatune's batched pipeline vs a per-sample torchvision DataLoader.

Both produce the same thing from the same 50 000 uint8 32×32 RGB images: shuffled batches of 512,
each image zero-padded by 4, randomly cropped back to 32×32, flipped left-right half the time, and
scaled to [−1, 1] as float32 (B, 3, 32, 32).

- ovatune: the images live in one uint8 tensor; a batch is one gather, ``pad_crop_flip`` on the
  whole batch and the networks' first layer (``ScaleToSymmetric``); no per-sample Python.
- torchvision: the usual recipe, a ``Dataset`` whose ``__getitem__`` makes a PIL image (as
  ``torchvision.datasets.CIFAR10`` does) and applies ``RandomCrop(32, padding=4)``,
  ``RandomHorizontalFlip()``, ``ToTensor()`` and ``Normalize(0.5, 0.5)`` to it, batched by a
  ``DataLoader`` with ``--workers`` worker processes (default: every core).

Both use every core of the machine (ovatune: torch threads = cores). The figure is the ratio of
batches per second (goal: ovatune ≥ 5× torchvision). ``--device cuda`` runs ovatune's side on the
GPU (the torchvision side always runs on CPU workers, as it would in training).

    python benchmarks/input_pipeline.py [--batches 40] [--workers N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
from torch.utils.data import DataLoader
from torchvision import transforms

from trainables.data.augment import pad_crop_flip
from trainables.loop import batch_order
from trainables.models.resnet import ScaleToSymmetric

N, BATCH = 50_000, 512


class PerSampleCifar(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per item: array → PIL image → transform."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        from PIL import Image

        self.images, self.labels, self.to_pil = images, labels, Image.fromarray
        self.transform = transforms.Compose(
            [
                transforms.RandomCrop(32, padding=4),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # [0, 1] → [−1, 1]
            ]
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(self.to_pil(self.images[i])), int(self.labels[i])


def torchvision_rate(images: np.ndarray, labels: np.ndarray, batches: int, workers: int) -> float:
    loader = DataLoader(
        PerSampleCifar(images, labels), batch_size=BATCH, shuffle=True, num_workers=workers, persistent_workers=True
    )
    stream = iter(loader)
    next(stream)  # workers started and warm
    started = time.perf_counter()
    for _ in range(batches):
        try:
            x, _ = next(stream)
        except StopIteration:  # an epoch is 97 batches: go on into the next, as training does
            stream = iter(loader)
            x, _ = next(stream)
    elapsed = time.perf_counter() - started
    assert x.shape == (BATCH, 3, 32, 32) and x.dtype == torch.float32
    return batches / elapsed


def ovatune_rate(images: np.ndarray, labels: np.ndarray, batches: int, device: torch.device) -> float:
    x_all = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device)  # (N, 3, 32, 32) uint8
    y_all = torch.from_numpy(labels).to(device)
    scale = ScaleToSymmetric()
    generator = torch.Generator(device=device).manual_seed(0)
    order = batch_order(N, BATCH, batches + 1, torch.Generator().manual_seed(0))

    def one(index: torch.Tensor) -> torch.Tensor:
        index = index.to(device)
        x, y = x_all[index], y_all[index]
        return scale(pad_crop_flip(x, generator)), y

    one(order[0])
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for index in order[1:]:
        x, _ = one(index)
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    assert x.shape == (BATCH, 3, 32, 32) and x.dtype == torch.float32
    return batches / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=40, help="timed batches per pipeline")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="torchvision DataLoader workers")
    parser.add_argument("--device", default="cpu", help="where ovatune's pipeline runs")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count())
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(N, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=N).astype(np.int64)

    ours = ovatune_rate(images, labels, args.batches, torch.device(args.device))
    theirs = torchvision_rate(images, labels, args.batches, args.workers)
    print("$ python " + " ".join(sys.argv))
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, batch {BATCH}, {args.batches} batches each")
    print(f"ovatune on {args.device}        : {ours:8.1f} batches/s ({ours * BATCH:,.0f} images/s)")
    print(f"torchvision, {args.workers} workers : {theirs:8.1f} batches/s ({theirs * BATCH:,.0f} images/s)")
    print(f"ratio                    : {ours / theirs:8.1f}x  (goal >= 5x)")


if __name__ == "__main__":
    main()
