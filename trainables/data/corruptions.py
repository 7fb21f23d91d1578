"""Image corruptions for dataset shift, after Hendrycks & Dietterich's CIFAR-10-C code.

Every corruption takes a batch of images ``(N, H, W, C)`` uint8 and a severity 1–5 and returns a
batch of the same shape and dtype, on the same device. Random ones draw from a ``torch.Generator``
so that a (seed, corruption, severity) triple always gives the same images. Parameters are the
published CIFAR ones; like the published pipeline (``np.uint8`` on its float output), results are
truncated to uint8, not rounded.

The embedded demo uses the two corruptions below; the rest of the 19 CIFAR-C corruptions belong here
as well.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

SEVERITIES = (1, 2, 3, 4, 5)

# Published CIFAR parameters (make_cifar_c.py), one per severity 1..5.
GAUSSIAN_NOISE_STD = (0.04, 0.06, 0.08, 0.09, 0.10)  # additive N(0, c) on the [0, 1] scale
CONTRAST_FACTOR = (0.75, 0.5, 0.4, 0.3, 0.15)  # scale around each image's per-channel mean


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats → uint8 by clipping, scaling and truncating, as ``np.uint8(clip(x)·255)``."""
    return (x.clamp(0.0, 1.0) * 255.0).to(torch.uint8)


def gaussian_noise(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """x + N(0, c²) per pixel and channel, clipped to [0, 1]."""
    c = GAUSSIAN_NOISE_STD[severity - 1]
    x = images.float() / 255.0  # (N, H, W, C)
    noise = torch.randn(x.shape, generator=generator, device=generator.device) * c
    return _to_uint8(x + noise)


def contrast(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """(x − m)·c + m with m each image's per-channel mean, clipped to [0, 1]. Deterministic."""
    c = CONTRAST_FACTOR[severity - 1]
    x = images.float() / 255.0  # (N, H, W, C)
    means = x.mean(dim=(1, 2), keepdim=True)  # (N, 1, 1, C)
    return _to_uint8((x - means) * c + means)


CORRUPTIONS: dict[str, Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]] = {
    "gaussian_noise": gaussian_noise,
    "contrast": contrast,
}


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """Apply corruption ``name`` at ``severity`` to a uint8 batch (N, H, W, C), reproducibly.

    Raises:
        ValueError: unknown corruption name, severity outside 1–5, or images not uint8 NHWC.
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose from: {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected uint8 images (N, H, W, C), got {images.dtype} {tuple(images.shape)}")
    generator = torch.Generator(device=images.device)
    generator.manual_seed(seed * 1000 + severity * 100 + list(CORRUPTIONS).index(name))
    return CORRUPTIONS[name](images, severity, generator)
