"""Corruption speed against the published CIFAR-10-C code, and the wall time of a CIFAR-100-C-sized set.

1. Per corruption, single-threaded like the reference (``torch.set_num_threads(1)``), intensity 3:
   images/s and the speed-up over the reference's ``seconds_per_image`` in
   ``shared/reference/cifar_c/meta.json`` (measured there on one core of this kind of machine).
   Goals: none slower than the reference; glass_blur, frost, defocus_blur, zoom_blur ≥ 20×; the 17
   CIFAR-100-C corruptions together ≥ 10×.
2. The real ``ovatune corrupt cifar100`` path (worker processes, one per core) on a CIFAR-100-sized
   test set: 10 000 images of the real 32×32×3 format, tiles of the reference inputs (CIFAR itself
   cannot be downloaded here) written as a CIFAR-100 pickle; 17 corruptions × 5 intensities =
   850 000 corrupted images. Goal: ≤ 90 s on this 2-core CPU.

    python benchmarks/corruptions.py                     # both parts
    python benchmarks/corruptions.py --skip-set          # part 1 only
    python benchmarks/corruptions.py --device cuda       # on a GPU: part 2 in one process on it
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "cifar_c"


def reference_inputs(reference: Path) -> np.ndarray:
    """The 64 reference inputs if present, else 32×32 tiles of scikit-learn's sample photographs."""
    if (reference / "inputs.npy").is_file():
        return np.load(reference / "inputs.npy")
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    return np.stack([p[r : r + 32, c : c + 32] for p in photos for r in range(0, 256, 32) for c in range(0, 128, 32)])


def per_corruption(inputs: np.ndarray, n: int, device: str, seconds_per_image: dict[str, float]) -> None:
    from trainables.data.corrupted_sets import CORRUPTED_SETS
    from trainables.data.corruptions import CORRUPTIONS, corrupt

    batch = torch.from_numpy(np.resize(inputs, (n, *inputs.shape[1:]))).to(device)
    print(f"\n1. intensity 3, {n} images, {torch.get_num_threads()} thread(s), {device}")
    print(f"{'corruption':<18} {'images/s':>10} {'us/image':>9} {'reference us':>13} {'speed-up':>9}")
    ours, theirs = {}, {}
    for name in CORRUPTIONS:
        corrupt(batch[:64], name, 3)  # warm-up: caches, operators
        times = []
        for _ in range(3):
            started = time.perf_counter()
            corrupt(batch, name, 3)
            if device != "cpu":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
        ours[name] = min(times) / n
        reference = seconds_per_image.get(name)
        ratio = f"{reference / ours[name]:8.1f}x" if reference else "        -"
        ref_text = f"{reference * 1e6:13.0f}" if reference else f"{'-':>13}"
        print(f"{name:<18} {1 / ours[name]:10.0f} {ours[name] * 1e6:9.1f} {ref_text} {ratio}")
        if reference:
            theirs[name] = reference
    cifar100 = CORRUPTED_SETS["cifar100"].corruptions
    if all(name in theirs for name in cifar100):
        total_ours, total_theirs = sum(ours[c] for c in cifar100), sum(theirs[c] for c in cifar100)
        print(
            f"CIFAR-100-C's 17 together: {total_ours * 1e3:.2f} ms/image vs the reference's "
            f"{total_theirs * 1e3:.2f} ms/image: {total_theirs / total_ours:.1f}x on one core"
        )


def cifar100_sized_set(inputs: np.ndarray, device: str, workers: int | None) -> None:
    from trainables.data.cifar import write_cifar
    from trainables.data.corrupted_sets import CORRUPTED_SETS, write_corrupted

    images = np.resize(inputs, (10_000, *inputs.shape[1:]))
    labels = np.arange(10_000) % 100
    cifar100 = CORRUPTED_SETS["cifar100"]
    folder, names = cifar100.folder, cifar100.corruptions
    with tempfile.TemporaryDirectory() as data_dir:
        write_cifar("cifar100", data_dir, images, labels, train=False)
        out = Path(data_dir) / folder
        print(f"\n2. ovatune corrupt cifar100 on 10 000 images ({len(names)} corruptions x 5 = "
              f"{len(names) * 50_000:,} images), {device}, workers={workers or 'one per core'}", flush=True)  # fmt: skip
        started = time.perf_counter()
        write_corrupted(images, labels, out, names, device=device, workers=workers)
        seconds = time.perf_counter() - started
        files = sorted(out.glob("*.npy"))
    print(f"wall time: {seconds:.1f} s for {len(files)} files ({len(names) * 50_000 / seconds:,.0f} images/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2048, help="batch for part 1 (default 2048)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, help="processes for part 2 on CPU (default: one per core)")
    parser.add_argument("--reference", type=Path, default=REFERENCE, help=f"default {REFERENCE}")
    parser.add_argument("--skip-set", action="store_true", help="only part 1")
    parser.add_argument("--skip-per-corruption", action="store_true", help="only part 2")
    args = parser.parse_args()
    print("command: python " + " ".join(sys.argv))
    meta = args.reference / "meta.json"
    seconds_per_image = {}
    if meta.is_file():
        seconds_per_image = {
            k: v["seconds_per_image"] for k, v in json.loads(meta.read_text())["per_corruption"].items()
        }
    else:
        print(f"(no reference at {args.reference}: speed-ups are not shown)")
    inputs = reference_inputs(args.reference)
    if not args.skip_per_corruption:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        per_corruption(inputs, args.images, args.device, seconds_per_image)
        torch.set_num_threads(threads)
    if not args.skip_set:
        cifar100_sized_set(inputs, args.device, args.workers)


if __name__ == "__main__":
    main()
