"""ImageMagick's motion blur in torch (no ImageMagick), for motion_blur and snow.

Reproduces ImageMagick 6 Q16's ``MotionBlurImage`` as the published code gets it through Wand and an
8-bit PNG: its one-sided Gaussian taps and their integer offsets along the angle, edge pixels
repeated, the sum rounded to 16 bits, then divided by 257 and truncated to 8 bits.

Tested by hand in ``tests/test_corruptions.py`` (the kernel; the blur of an edge), and through
motion_blur, fed the reference's recorded angles, bit for bit with the published code's outputs at
every intensity (``tests/test_corruptions_fidelity.py``).
"""

from __future__ import annotations

import math

import torch


def _magick_motion_kernel(
    radius: float, sigma: float, angles: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ImageMagick 6's ``MotionBlurImage`` taps: weights (K,) and integer offsets (N, K) down and across.

    K = 2·ceil(radius) + 1 taps of a one-sided Gaussian exp(−i²/2σ²), normalised, at
    ``ceil(i·cos θ − 0.5)`` columns and ``ceil(i·sin θ − 0.5)`` rows from the pixel (θ per image, in
    degrees), computed in float64 as the C code does.
    """
    width = int(2 * math.ceil(radius) + 1)
    i = torch.arange(width, dtype=torch.float64, device=angles.device)  # (K,)
    kernel = torch.exp(-(i * i) / (2.0 * sigma * sigma)) / (math.sqrt(2 * math.pi) * sigma)
    radians = math.pi * angles.double() / 180.0  # (N,)
    point_x, point_y = width * torch.sin(radians), width * torch.cos(radians)
    length = torch.hypot(point_x, point_y)[:, None]
    across = torch.ceil(i * point_y[:, None] / length - 0.5).long()  # (N, K)
    down = torch.ceil(i * point_x[:, None] / length - 0.5).long()
    return kernel / kernel.sum(), down, across


def magick_motion_blur(images: torch.Tensor, radius: float, sigma: float, angles: torch.Tensor) -> torch.Tensor:
    """ImageMagick 6 Q16 ``MotionBlurImage`` of uint8 images (N, H, W, C), one angle per image, as
    the published code gets it through Wand and an 8-bit PNG: values scaled to 16 bits, taps read
    with edge pixels repeated, the sum rounded to 16 bits, then divided by 257 and truncated to 8 bits
    (bit-exact with the reference's recorded angles)."""
    n, h, w, c = images.shape
    weights, down, across = _magick_motion_kernel(radius, sigma, angles.to(images.device))
    pixels = images.reshape(n, h * w, c).double() * 257.0  # ScaleCharToQuantum
    rows = torch.arange(h, device=images.device).view(1, h, 1)
    cols = torch.arange(w, device=images.device).view(1, 1, w)
    total = torch.zeros_like(pixels)
    for k in range(len(weights)):
        source_r = (rows + down[:, k].view(n, 1, 1)).clamp(0, h - 1)  # (N, H, 1)
        source_c = (cols + across[:, k].view(n, 1, 1)).clamp(0, w - 1)  # (N, 1, W)
        index = (source_r * w + source_c).view(n, h * w, 1).expand(n, h * w, c)
        total += weights[k] * pixels.gather(1, index)
    quantum = torch.floor(total.clamp(0, 65535) + 0.5)  # ClampToQuantum: round to 16 bits
    return torch.div(quantum, 257, rounding_mode="floor").to(torch.uint8).view(n, h, w, c)  # the 8-bit PNG
