"""ImageNet from an ImageFolder tree and ImageNet-C, streamed from JPEG files by DataLoader workers.

On disk, under ``<data_dir>`` (or $OVATUNE_DATA_DIR):

- ``imagenet/train/<wnid>/*.JPEG`` and ``imagenet/val/<wnid>/*.JPEG``: the ILSVRC-2012 training and
  validation images in one folder per class (the layout of torchvision's ``ImageFolder``; the
  validation images sorted into class folders, as the usual ``valprep.sh`` does). ImageNet's
  validation set is the test split here; 10% of the training images, stratified and seeded, are the
  validation split that selects the champion.
- ``ImageNet-C/<corruption>/<1..5>/<wnid>/*.JPEG``: the published ImageNet-C (224×224 crops), the
  test split's shifted copies. The 15 standard corruptions; the 4 "extra" ones are used when present.

ImageNet does not fit in memory, so its splits hold :class:`ImageFiles` instead of tensors: the list
of files and a torchvision transforms-v2 pipeline, decoded in DataLoader worker processes. Training
images get ``RandomResizedCrop(224)`` and a horizontal flip; evaluation images ``Resize(256)`` and
``CenterCrop(224)``. Both stay uint8 (3, 224, 224); the network scales them to [−1, 1] itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.datasets.folder import find_classes, make_dataset
from torchvision.transforms import v2

from trainables.data import Dataset, DatasetNotAvailable, Split, data_root, stratified_split

IMAGE_SIZE = 224
EXTENSIONS = (".jpeg", ".jpg", ".png")  # what make_dataset accepts, case-insensitively
VAL_FRACTION = 0.1  # of the training images, stratified and seeded (DESIGN §5)
# The published ImageNet-C: 15 corruptions, then the 4 "extra" ones of its second download.
IMAGENET_C = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
              "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
              "jpeg_compression")  # fmt: skip
IMAGENET_C_EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")

# uint8 (3, H, W) → uint8 (3, 224, 224): the training augmentation and the evaluation view.
TRAIN_TRANSFORM = v2.Compose([v2.RandomResizedCrop(IMAGE_SIZE, antialias=True), v2.RandomHorizontalFlip()])
EVAL_TRANSFORM = v2.Compose([v2.Resize(256, antialias=True), v2.CenterCrop(IMAGE_SIZE)])
SHIFTED_TRANSFORM = v2.CenterCrop(IMAGE_SIZE)  # ImageNet-C images are already 224×224 crops


def read_rgb(path: str) -> torch.Tensor:
    """A JPEG (or PNG) file as uint8 (3, H, W) RGB; grey and CMYK files are converted. Pillow decodes,
    as in torchvision's ImageFolder (torchvision's own decoders are deprecated from 0.29)."""
    with Image.open(path) as image:
        return v2.functional.pil_to_tensor(image.convert("RGB"))


class ImageFiles(torch.utils.data.Dataset):
    """Image files with labels, decoded and transformed one by one in DataLoader workers.

    It stands where an in-memory split holds a tensor of inputs: ``shape`` is (N, 3, 224, 224) and
    :func:`trainables.data.input_batches` batches it through a DataLoader.

    Args:
        samples: (path, label) pairs.
        transform: uint8 (3, H, W) → uint8 (3, 224, 224).
    """

    def __init__(self, samples: list[tuple[str, int]], transform: Callable[[torch.Tensor], torch.Tensor]):
        self.samples, self.transform = samples, transform

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.samples), 3, IMAGE_SIZE, IMAGE_SIZE)

    @property
    def labels(self) -> torch.Tensor:
        return torch.tensor([label for _, label in self.samples], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[int(index)]
        return self.transform(read_rgb(path)), label  # (3, 224, 224) uint8, int

    def evaluation_view(self, max_examples: int) -> ImageFiles:
        """At most ``max_examples`` evenly spaced files, seen as evaluation sees them (no augmentation)."""
        step = max(1, -(-len(self) // max_examples))
        return ImageFiles(self.samples[::step], EVAL_TRANSFORM)

    def subset(self, index: list[int]) -> ImageFiles:
        """The files at ``index``, transformed as these are.

        Args:
            index: positions in ``samples``.
        """
        return ImageFiles([self.samples[i] for i in index], self.transform)

    def loader(self, batches: list[list[int]], workers: int, seed: int, pin_memory: bool = False) -> DataLoader:
        """A DataLoader over the given index batches. ``seed`` fixes every random crop and flip: the
        workers' RNGs are seeded from it (the same ``workers`` gives the same images)."""
        return DataLoader(
            self,
            batch_sampler=batches,
            num_workers=workers,
            generator=torch.Generator().manual_seed(seed),
            pin_memory=pin_memory,
            persistent_workers=False,
        )

    def batches(self, batch_size: int, workers: int = 0) -> Iterator[torch.Tensor]:
        """The inputs in order, (B, 3, 224, 224) uint8 per batch (evaluation). At most one worker per
        batch after the first: a worker decodes ahead of the model, and a set of one batch has
        nothing to decode ahead (a worker process cost 50 ms per ImageNet-C set of 6 files here)."""
        index = [list(range(i, min(i + batch_size, len(self)))) for i in range(0, len(self), batch_size)]
        for x, _ in self.loader(index, max(0, min(workers, len(index) - 1)), seed=0):
            yield x


def imagenet_root(data_dir: str | Path | None) -> Path:
    """``<data_dir>/imagenet``, checked to hold ``train/`` and ``val/`` class folders.

    Raises:
        DatasetNotAvailable: not there; the message names the paths and how to get the data.
    """
    root = data_root("imagenet", data_dir, "imagenet/train/ and imagenet/val/") / "imagenet"
    missing = [str(root / split) for split in ("train", "val") if not (root / split).is_dir()]
    if missing:
        raise DatasetNotAvailable(
            f"imagenet not found: looked for {' and '.join(missing)}. ImageNet cannot be downloaded "
            f"automatically: get ILSVRC-2012 from https://image-net.org (after accepting its terms), extract "
            f"the training images to {root}/train/<wnid>/ and the validation images to {root}/val/<wnid>/ "
            f"(e.g. with the valprep.sh of pytorch/examples' imagenet README)"
        )
    return root


def download_imagenet(data_dir: str | Path | None) -> None:
    """ImageNet and ImageNet-C cannot be downloaded automatically (ImageNet needs its licence
    accepted): always an error that says where to get them.

    Raises:
        DatasetNotAvailable: always.
    """
    raise DatasetNotAvailable(
        "imagenet cannot be downloaded automatically: get ILSVRC-2012 from https://image-net.org (after "
        "accepting its terms) and ImageNet-C from https://zenodo.org/record/2235448, and put them under "
        "--data-dir as the README's 'Datasets' section shows"
    )


def _samples(folder: Path, class_to_idx: dict[str, int]) -> list[tuple[str, int]]:
    try:
        return make_dataset(str(folder), class_to_idx, extensions=EXTENSIONS, allow_empty=True)
    except FileNotFoundError as error:
        raise DatasetNotAvailable(f"{folder}: {error}") from error


def load_imagenet(data_dir: str | None, seed: int = 0) -> Dataset:
    """ImageNet from ``<data_dir>/imagenet`` with ImageNet-C from ``<data_dir>/ImageNet-C`` (see the
    module doc). Only file lists are read here; images are decoded when batches are drawn."""
    root = imagenet_root(data_dir)
    classes, class_to_idx = find_classes(str(root / "train"))
    train_samples = _samples(root / "train", class_to_idx)
    labels = np.array([label for _, label in train_samples])
    keep, held_out = stratified_split(labels, VAL_FRACTION, seed)

    def split(samples: list[tuple[str, int]], transform) -> Split:
        files = ImageFiles(samples, transform)
        return Split(files, files.labels)

    shifted_root = root.parent / "ImageNet-C"
    corruptions = IMAGENET_C + tuple(c for c in IMAGENET_C_EXTRA if (shifted_root / c).is_dir())

    def shifted(corruption: str, intensity: int) -> ImageFiles:
        folder = shifted_root / corruption / str(intensity)
        if not folder.is_dir():
            raise DatasetNotAvailable(
                f"{folder} not found: the shifted test sets of imagenet are the published ImageNet-C "
                f"(https://zenodo.org/record/2235448), extracted to {shifted_root}/<corruption>/<1..5>/<wnid>/"
            )
        files = ImageFiles(_samples(folder, class_to_idx), SHIFTED_TRANSFORM)
        if not torch.equal(files.labels, test.y):  # evaluation scores them with the test labels
            raise DatasetNotAvailable(
                f"{folder} holds {len(files)} images, not the test split's {len(test)} in the same classes: "
                f"an incomplete ImageNet-C extraction?"
            )
        return files

    test = split(_samples(root / "val", class_to_idx), EVAL_TRANSFORM)
    return Dataset(
        name="imagenet",
        class_names=classes,
        train=split([train_samples[i] for i in keep], TRAIN_TRANSFORM),
        val=split([train_samples[i] for i in held_out], EVAL_TRANSFORM),
        test=test,
        ood={},  # the paper's ImageNet experiment measures shift only (Fig. S4)
        shift_corruptions=corruptions,
        shifted=shifted,
        preprocessing="images_0_255_nhwc_unscaled",
        augmentation=None,  # done per image by TRAIN_TRANSFORM in the loader's workers
    )
