"""The 19 CIFAR-10-C corruptions (Hendrycks & Dietterich, 2019) in batched torch, CPU or CUDA.

Every corruption takes a batch of images ``(N, H, W, C)`` uint8 and a intensity 1–5 and returns a
batch of the same shape and dtype, on the same device. Random ones draw from a ``torch.Generator``
so that a (seed, corruption, intensity) triple always gives the same images. Parameters are the
published CIFAR ones (``make_cifar_c.py``); like the published pipeline (``np.uint8`` on its float
output), results are truncated to uint8, not rounded.

Fidelity, against the published code's outputs in ``shared/reference/cifar_c``
(``tests/test_corruptions_fidelity.py``):

- the eight deterministic ones match it: pixelate, jpeg_compression and contrast bit for bit;
  brightness, saturate, gaussian_blur, defocus_blur and zoom_blur off by at most 1 grey level,
  with a mean absolute difference of at most 0.081 (saturate's);
- motion_blur and frost, fed the reference's recorded random draws, match it bit for bit
  (ImageMagick's motion blur is written here in torch; the frost photographs ship in ``frost/``);
- the other random ones match its mean change per intensity within a few percent.

Speed comes from turning each filter into small dense matrices (borders folded in) applied by
matmul, and from working ``CHUNK`` images at a time.

The package, one job per module (grouped as Hendrycks & Dietterich group the corruptions: noise,
blur, weather, digital; the four extra ones, speckle_noise, gaussian_blur, spatter and saturate, one
in each):

- ``__init__``: this API: the ``CORRUPTIONS`` registry, ``corrupt`` (seeded, chunked) and
  ``corrupt_small`` (images smaller than CIFAR's);
- ``parameters``: ``INTENSITIES``, the published parameter tables, and the published uint8 conversion;
- ``noise``: gaussian_noise, shot_noise, impulse_noise, speckle_noise;
- ``blur``: defocus_blur, glass_blur, motion_blur, zoom_blur, gaussian_blur;
- ``weather``: snow, frost (with its photographs), fog (with its plasma fractal), brightness, spatter;
- ``digital``: contrast, elastic_transform, pixelate, jpeg_compression, saturate;
- ``filters``: separable filters and bilinear sampling with scipy's, skimage's and OpenCV's border
  rules folded into matrices (skimage's Gaussian, cv2.blur, map_coordinates / warpAffine reads);

and the torch ports of other libraries' kernels (each module's docstring says what it reproduces and
how it is tested):

- ``pillow_box``: Pillow's BOX resampling (pixelate);
- ``scipy_zoom``: the published ``clipped_zoom`` with ``scipy.ndimage.zoom(order=1)`` (zoom_blur, snow);
- ``imagemagick_motion``: ImageMagick 6's ``MotionBlurImage`` (motion_blur, snow);
- ``skimage_hsv``: ``skimage.color.rgb2hsv`` and ``hsv2rgb`` (brightness, saturate);
- ``opencv_canny``, ``opencv_chamfer``, ``opencv_equalize_hist``: ``cv2.Canny``,
  ``cv2.distanceTransform(DIST_L2, 5)`` and ``cv2.equalizeHist`` (spatter's water mask).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import torch

from .blur import (
    defocus_blur,
    disk_kernel,
    gaussian_blur,
    glass_blur,
    motion_blur,
    motion_blur_with_angles,
    zoom_blur,
    zoom_factors,
    zoom_operator,
)
from .digital import contrast, elastic_transform, jpeg_compression, pixelate, saturate
from .filters import _border_indices as _border_indices  # tested directly
from .filters import correlation_matrix, gaussian_taps
from .imagemagick_motion import _magick_motion_kernel as _magick_motion_kernel  # tested directly
from .imagemagick_motion import magick_motion_blur
from .noise import gaussian_noise, impulse_noise, shot_noise, speckle_noise
from .opencv_canny import canny
from .opencv_chamfer import chamfer_distance
from .opencv_equalize_hist import equalize_hist
from .parameters import (
    BRIGHTNESS_SHIFT,
    CONTRAST_FACTOR,
    DEFOCUS,
    ELASTIC,
    FOG,
    FROST,
    GAUSSIAN_BLUR_SIGMA,
    GAUSSIAN_NOISE_STD,
    GLASS,
    IMPULSE_AMOUNT,
    INTENSITIES,
    JPEG_QUALITY,
    MOTION_BLUR,
    PIXELATE_SCALE,
    SATURATE,
    SHOT_NOISE_RATE,
    SNOW,
    SPATTER,
    SPECKLE_STD,
    ZOOM_STOPS,
)
from .pillow_box import pil_box_weights
from .scipy_zoom import clipped_zoom_matrix
from .skimage_hsv import hsv_to_rgb, rgb_to_hsv
from .weather import brightness, fog, frost, frost_textures, frost_with_crops, plasma_fractal, snow, spatter

__all__ = [
    # the registry and its entry points
    "CORRUPTIONS",
    "CHUNK",
    "corrupt",
    "PIXELWISE",
    "CIFAR_SIZE",
    "corrupt_small",
    # the published parameters
    "INTENSITIES",
    "GAUSSIAN_NOISE_STD",
    "CONTRAST_FACTOR",
    "SHOT_NOISE_RATE",
    "IMPULSE_AMOUNT",
    "SPECKLE_STD",
    "GLASS",
    "FOG",
    "BRIGHTNESS_SHIFT",
    "SATURATE",
    "GAUSSIAN_BLUR_SIGMA",
    "PIXELATE_SCALE",
    "ZOOM_STOPS",
    "JPEG_QUALITY",
    "DEFOCUS",
    "MOTION_BLUR",
    "SNOW",
    "ELASTIC",
    "SPATTER",
    "FROST",
    # the corruptions, in the published order
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
    "speckle_noise",
    "gaussian_blur",
    "spatter",
    "saturate",
    # their building blocks
    "motion_blur_with_angles",
    "frost_with_crops",
    "frost_textures",
    "plasma_fractal",
    "disk_kernel",
    "zoom_factors",
    "zoom_operator",
    "clipped_zoom_matrix",
    "correlation_matrix",
    "gaussian_taps",
    "rgb_to_hsv",
    "hsv_to_rgb",
    "pil_box_weights",
    "magick_motion_blur",
    "canny",
    "chamfer_distance",
    "equalize_hist",
]


CORRUPTIONS: dict[str, Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]] = {
    # in the published order
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "zoom_blur": zoom_blur,
    "snow": snow,
    "frost": frost,
    "fog": fog,
    "brightness": brightness,
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
    "speckle_noise": speckle_noise,
    "gaussian_blur": gaussian_blur,
    "spatter": spatter,
    "saturate": saturate,
}


CHUNK = 256  # images per call: small enough that the float intermediates stay in the CPU's cache


def corrupt(images: torch.Tensor, name: str, intensity: int, seed: int = 0, chunk: int = CHUNK) -> torch.Tensor:
    """Apply corruption ``name`` at ``intensity`` to a uint8 batch (N, H, W, C), reproducibly.

    The batch is processed ``chunk`` images at a time, in order, from one generator seeded by
    (seed, name, intensity): the result depends on those, the images and the chunk size only (not on
    the machine's thread count or on other corruptions). CPU and CUDA generators draw different
    streams, so the same seed gives different (equally valid) random corruptions on each.

    Raises:
        ValueError: unknown corruption name, intensity outside 1–5, or images not uint8 NHWC.
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose from: {', '.join(CORRUPTIONS)}")
    if intensity not in INTENSITIES:
        raise ValueError(f"intensity must be one of {INTENSITIES}, got {intensity!r}")
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected uint8 images (N, H, W, C), got {images.dtype} {tuple(images.shape)}")
    generator = torch.Generator(device=images.device)
    # Depends on the names, not on the registry's order, so adding a corruption changes no other's draws.
    generator.manual_seed(zlib.crc32(f"{seed}/{name}/{intensity}".encode()))
    function = CORRUPTIONS[name]
    return torch.cat([function(part, intensity, generator).contiguous() for part in images.split(chunk)])


# Corruptions of each value on its own: their intensity does not depend on the image's size.
PIXELWISE = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "brightness", "contrast", "saturate")
CIFAR_SIZE = 32


def corrupt_small(images: torch.Tensor, name: str, intensity: int, seed: int = 0) -> torch.Tensor:
    """The corruptions adapted to square images smaller than CIFAR's, e.g. the 8×8 digits (gray or RGB).

    Pixel-wise ones (``PIXELWISE``) apply to the values as they are. Every other one acts in a 32×32
    frame: each pixel is repeated k×k times (k = 32 / size; k = 4 for the digits, which are 32×32
    bitmaps averaged 4×4), the CIFAR corruption runs with the CIFAR parameters, and k×k blocks are
    averaged back (rounded). So spatial sizes — blur radii, zoom factors, displacements, motion
    lengths, frost and snow textures — keep their size relative to the image, which is what a
    intensity means on CIFAR; in the small image's own pixels they are scaled by size / 32.
    Gray images (C = 1) are corrupted as RGB with equal channels and come back as the channels' mean.
    """
    n, h, w, c = images.shape
    if h != w or CIFAR_SIZE % h:
        raise ValueError(f"corrupt_small needs square images whose size divides {CIFAR_SIZE}, got {h}×{w}")
    rgb = images.expand(n, h, w, 3) if c == 1 else images
    if name in PIXELWISE:
        out = corrupt(rgb, name, intensity, seed).float()
    else:
        k = CIFAR_SIZE // h
        frame = rgb.repeat_interleave(k, dim=1).repeat_interleave(k, dim=2)  # (N, 32, 32, 3)
        out = corrupt(frame, name, intensity, seed).float().reshape(n, h, k, w, k, 3).mean(dim=(2, 4))
    if c == 1:
        out = out.mean(dim=3, keepdim=True)
    return out.round().to(torch.uint8)
