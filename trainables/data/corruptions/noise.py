"""The noise corruptions: gaussian_noise, shot_noise, impulse_noise and speckle_noise."""

from __future__ import annotations

import torch

from .parameters import GAUSSIAN_NOISE_STD, IMPULSE_AMOUNT, SHOT_NOISE_RATE, SPECKLE_STD, _to_uint8


def gaussian_noise(images: torch.Tensor, intensity: int, generator: torch.Generator) -> torch.Tensor:
    """x + N(0, c²) per pixel and channel, clipped to [0, 1]."""
    c = GAUSSIAN_NOISE_STD[intensity - 1]
    x = images.float() / 255.0  # (N, H, W, C)
    noise = torch.randn(x.shape, generator=generator, device=generator.device) * c
    return _to_uint8(x + noise)


def shot_noise(images: torch.Tensor, intensity: int, generator: torch.Generator) -> torch.Tensor:
    """poisson(x · c) / c, clipped."""
    c = SHOT_NOISE_RATE[intensity - 1]
    x = images.float() / 255.0
    return _to_uint8(torch.poisson(x * c, generator=generator) / c)


def impulse_noise(images: torch.Tensor, intensity: int, generator: torch.Generator) -> torch.Tensor:
    """Salt and pepper: each value is replaced with probability c, half by 1 and half by 0
    (``skimage.util.random_noise(mode='s&p')``, per channel)."""
    amount = IMPULSE_AMOUNT[intensity - 1]
    x = images.float() / 255.0
    draw = torch.rand(x.shape, generator=generator, device=generator.device, dtype=torch.float32)
    salt = torch.rand(x.shape, generator=generator, device=generator.device) < 0.5
    noisy = torch.where(salt, torch.ones_like(x), torch.zeros_like(x))
    return _to_uint8(torch.where(draw < amount, noisy, x))


def speckle_noise(images: torch.Tensor, intensity: int, generator: torch.Generator) -> torch.Tensor:
    """x + x · N(0, c²), clipped."""
    x = images.float() / 255.0
    noise = torch.randn(x.shape, generator=generator, device=generator.device)
    return _to_uint8(x + x * noise * SPECKLE_STD[intensity - 1])
