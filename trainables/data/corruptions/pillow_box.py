"""Pillow's BOX resampling of 8-bit images, in torch, for pixelate.

Reproduces ``Image.resize(..., Image.BOX)`` exactly: the same fixed-point coefficients as Pillow's
``precompute_coeffs`` + ``normalize_coeffs_8bpc`` (22 bits of precision), its rounding
``clip8((Σ w·v + 2^21) >> 22)`` after each pass, and its upscaling, which copies one source pixel
per output pixel.

Tested through pixelate, bit for bit with the published PIL pipeline's outputs at every intensity
(``tests/test_corruptions_fidelity.py``).
"""

from __future__ import annotations

import functools

import torch

_PIL_PRECISION_BITS = 22  # Pillow's fixed-point precision for 8-bit resampling (32 − 8 − 2)


@functools.cache
def pil_box_weights(in_size: int, out_size: int) -> torch.Tensor:
    """Pillow's fixed-point BOX resampling weights, int64 (out_size, in_size).

    The same coefficients as Pillow's ``precompute_coeffs`` + ``normalize_coeffs_8bpc``, so that a
    resize with them reproduces ``Image.resize(..., Image.BOX)`` exactly.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    weights = torch.zeros(out_size, in_size, dtype=torch.float64)
    for out in range(out_size):
        centre = (out + 0.5) * scale
        low = max(int(centre - support + 0.5), 0)
        high = min(int(centre + support + 0.5), in_size)
        for i in range(low, high):
            t = (i - centre + 0.5) / filterscale
            weights[out, i] = 1.0 if -0.5 < t <= 0.5 else 0.0
        total = weights[out].sum()
        if total:
            weights[out] /= total
    return torch.floor(0.5 + weights * (1 << _PIL_PRECISION_BITS)).long()


def _pil_box_matrix(in_size: int, out_size: int, device: torch.device) -> torch.Tensor:
    """Pillow's BOX weights (out_size, in_size) pre-scaled by 2^−22, float64 (exact: a power of two)."""
    return pil_box_weights(in_size, out_size).to(device, torch.float64) / (1 << _PIL_PRECISION_BITS)


def _round_like_pillow(sums: torch.Tensor) -> torch.Tensor:
    """Pillow's ``clip8((Σ w·v + 2^21) >> 22)`` on sums already divided by 2^22, in place."""
    return sums.add_(0.5).floor_().clamp_(0, 255)


def _pil_box_upscale_index(in_size: int, out_size: int) -> torch.Tensor:
    """Pillow's BOX *up*-scaling reads exactly one source pixel per output pixel (weight 2^22): its index."""
    weights = pil_box_weights(in_size, out_size)
    assert bool((weights.max(dim=1).values == 1 << _PIL_PRECISION_BITS).all()), "BOX upscaling copies pixels"
    return weights.argmax(dim=1)
