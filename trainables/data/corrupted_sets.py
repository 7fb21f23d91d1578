"""Corrupted copies of a test set in the published CIFAR-10-C layout.

One ``<corruption>.npy`` per corruption: uint8 (5·N, H, W, C), intensities 1–5 one after the other
(N = 10 000 for CIFAR), plus ``labels.npy`` (5·N,) uint8, the test labels five times over.
CIFAR-10-C is published; CIFAR-100-C is not, and the paper generates it with 17 corruptions (all but
motion_blur and snow), which is what ``ovatune corrupt cifar100`` writes.

Work is split into (corruption, intensity) jobs run by worker processes, one thread each, that write
straight into a memory-mapped ``<corruption>.npy.partial``; a file is renamed to ``.npy`` once all
five intensities are in, so an interrupted run resumes at the first unfinished file.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class CorruptedSet:
    """A dataset's corrupted test sets: the published folder name and which corruptions it leaves out.

    The corruptions (torch code) are imported when :attr:`corruptions` is first read, so that the
    CLI lists these sets without them.
    """

    folder: str
    leaves_out: tuple[str, ...] = ()

    @property
    def corruptions(self) -> tuple[str, ...]:
        """Its corruptions, in the published order."""
        from trainables.data.corruptions import CORRUPTIONS

        return tuple(name for name in CORRUPTIONS if name not in self.leaves_out)


# dataset -> its corrupted test sets (CIFAR-100-C as the paper generates it: 17 corruptions)
CORRUPTED_SETS = {
    "cifar10": CorruptedSet("CIFAR-10-C"),
    "cifar100": CorruptedSet("CIFAR-100-C", leaves_out=("motion_blur", "snow")),
}


def is_complete(path: Path, shape: tuple[int, ...]) -> bool:
    """Whether ``path`` is a finished .npy of uint8 ``shape`` (reads the header only)."""
    if not path.is_file():
        return False
    try:
        array = np.load(path, mmap_mode="r")
    except (ValueError, OSError):
        return False
    return array.shape == shape and array.dtype == np.uint8


def _corrupt_job(images_path: str, out_path: str, name: str, intensity: int, seed: int, device: str) -> int:
    """Worker: corrupt the saved test images at one intensity into rows of the partial file."""
    import torch

    from trainables.data.corruptions import CHUNK, corrupt

    if device == "cpu":
        torch.set_num_threads(1)  # one process per core is faster than threads here
    images = torch.from_numpy(np.load(images_path)).to(device)
    n = len(images)
    result = corrupt(images, name, intensity, seed, chunk=CHUNK if device == "cpu" else n)  # a GPU takes all at once
    target = np.load(out_path, mmap_mode="r+")
    target[(intensity - 1) * n : intensity * n] = result.cpu().numpy()
    target.flush()
    return n


def write_corrupted(
    images: np.ndarray,
    labels: np.ndarray,
    out_dir: str | Path,
    corruptions: Iterable[str],
    *,
    seed: int = 0,
    device: str = "cpu",
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, str]:
    """Write ``<corruption>.npy`` for each corruption and ``labels.npy`` into ``out_dir``.

    Args:
        images: the clean test images, uint8 (N, H, W, C).
        labels: their labels (N,).
        out_dir: created if needed; finished files already there are kept, not redone.
        corruptions: names from ``CORRUPTIONS``.
        seed: with (corruption, intensity), fixes every random draw.
        device: "cpu" or a CUDA device; on CUDA one process does all the work.
        workers: processes on CPU (default: one per core).
        progress: show a progress bar.

    Returns:
        corruption -> "written" or "kept" (already complete).
    """
    from tqdm import tqdm

    from trainables.data.corruptions import CORRUPTIONS, INTENSITIES

    corruptions = list(corruptions)
    unknown = [c for c in corruptions if c not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruption {', '.join(unknown)}; choose from: {', '.join(CORRUPTIONS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = len(images)
    shape = (len(INTENSITIES) * n, *images.shape[1:])
    np.save(out / "labels.npy", np.tile(np.asarray(labels).astype(np.uint8), len(INTENSITIES)))

    status = {name: "kept" for name in corruptions if is_complete(out / f"{name}.npy", shape)}
    todo = [name for name in corruptions if name not in status]
    if not todo:
        return status
    clean = out / ".clean-images.npy"  # what the workers read
    np.save(clean, np.ascontiguousarray(images, dtype=np.uint8))
    for name in todo:  # a partial file from an interrupted run is started again
        np.lib.format.open_memmap(out / f"{name}.npy.partial", mode="w+", dtype=np.uint8, shape=shape).flush()

    jobs = [(name, intensity) for name in todo for intensity in INTENSITIES]
    remaining = {name: len(INTENSITIES) for name in todo}
    bar = tqdm(total=len(jobs) * n, unit="img", unit_scale=True, desc="corrupting", disable=not progress)
    if device != "cpu":
        workers = 1
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch thread pools
    try:
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = {
                pool.submit(_corrupt_job, str(clean), str(out / f"{name}.npy.partial"), name, sev, seed, device): name
                for name, sev in jobs
            }
            for future in concurrent.futures.as_completed(futures):
                name = futures[future]
                bar.update(future.result())
                remaining[name] -= 1
                if remaining[name] == 0:
                    os.replace(out / f"{name}.npy.partial", out / f"{name}.npy")
                    status[name] = "written"
                    bar.set_postfix_str(f"{name} done")
    finally:
        bar.close()
        clean.unlink(missing_ok=True)
    return status
