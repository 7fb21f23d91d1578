"""What every corruption shares with the published code: the intensities, the published CIFAR
parameters per intensity (``make_cifar_c.py``), and its conversion of float results to uint8
(``np.uint8(clip(x)·255)``: clipped and truncated, not rounded)."""

from __future__ import annotations

import torch

from trainables.data import INTENSITIES  # noqa: F401 (re-exported: the tables below have one entry per intensity)

# Published CIFAR parameters (make_cifar_c.py), one per intensity 1..5.
GAUSSIAN_NOISE_STD = (0.04, 0.06, 0.08, 0.09, 0.10)  # additive N(0, c) on the [0, 1] scale
CONTRAST_FACTOR = (0.75, 0.5, 0.4, 0.3, 0.15)  # scale around each image's per-channel mean
SHOT_NOISE_RATE = (500, 250, 100, 75, 50)  # poisson(x · c) / c on the [0, 1] scale
IMPULSE_AMOUNT = (0.01, 0.02, 0.03, 0.05, 0.07)  # salt-and-pepper probability per pixel and channel
SPECKLE_STD = (0.06, 0.1, 0.12, 0.16, 0.2)  # x + x · N(0, c)
GLASS = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))  # sigma, max_delta, iterations
FOG = ((0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75))  # fractal strength, wibble decay
BRIGHTNESS_SHIFT = (0.05, 0.1, 0.15, 0.2, 0.3)  # added to HSV value
SATURATE = ((0.3, 0.0), (0.1, 0.0), (1.5, 0.0), (2.0, 0.1), (2.5, 0.2))  # HSV saturation · a + b
GAUSSIAN_BLUR_SIGMA = (0.4, 0.6, 0.7, 0.8, 1.0)  # skimage.filters.gaussian sigma, per channel
PIXELATE_SCALE = (0.95, 0.9, 0.85, 0.75, 0.65)  # BOX-resize down to int(size · c), then back up
ZOOM_STOPS = (1.06, 1.11, 1.16, 1.21, 1.26)  # zoom factors np.arange(1, stop, 0.01), float quirks kept
JPEG_QUALITY = (80, 65, 58, 50, 40)
DEFOCUS = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1))  # disk radius, its 3×3 blur sigma
MOTION_BLUR = ((6, 1.0), (6, 1.5), (6, 2.0), (8, 2.0), (9, 2.5))  # ImageMagick radius, sigma; angle U(−45°, 45°)
# normal loc, scale; zoom; threshold; motion-blur radius, sigma (angle U(−135°, −45°)); weight of the image
SNOW = (
    (0.1, 0.2, 1.0, 0.6, 8, 3, 0.95),
    (0.1, 0.2, 1.0, 0.5, 10, 4, 0.9),
    (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
    (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
    (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
)
# × the image size (32 for CIFAR): displacement scale alpha, its Gaussian sigma, the affine jitter
ELASTIC = ((0.0, 0.0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))
# normal loc, scale; Gaussian sigma; threshold; water intensity or mud mask sigma; 0 = water, 1 = mud
SPATTER = (
    (0.62, 0.1, 0.7, 0.7, 0.5, 0),
    (0.65, 0.1, 0.8, 0.7, 0.5, 0),
    (0.65, 0.3, 1.0, 0.69, 0.5, 0),
    (0.65, 0.1, 0.7, 0.69, 0.6, 1),
    (0.65, 0.1, 0.5, 0.68, 0.6, 1),
)
FROST = ((1.0, 0.2), (1.0, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))  # weight of the image, of the frost


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats → uint8 by clipping, scaling and truncating, as ``np.uint8(clip(x)·255)``."""
    return (x.clamp(0.0, 1.0) * 255.0).to(torch.uint8)
