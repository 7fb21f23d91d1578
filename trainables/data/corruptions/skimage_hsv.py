"""skimage's RGB ↔ HSV conversions in torch, for brightness and saturate.

Reproduces ``skimage.color.rgb2hsv`` (ties broken b > g > r, as it breaks them) and
``skimage.color.hsv2rgb`` on floats in [0, 1], channels last.

Tested through brightness and saturate against the published code's outputs
(``tests/test_corruptions_fidelity.py``): within 1 grey level, mean absolute difference at most 0.081
(saturate's).
"""

from __future__ import annotations

import torch


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] → HSV in [0, 1], channels last, as ``skimage.color.rgb2hsv`` (ties: b > g > r)."""
    r, g, b = rgb.unbind(dim=-1)
    v = rgb.amax(dim=-1)
    delta = v - rgb.amin(dim=-1)
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    s = torch.where(v > 0, delta / torch.where(v > 0, v, torch.ones_like(v)), torch.zeros_like(v))
    h = torch.where(r == v, (g - b) / safe, torch.zeros_like(v))
    h = torch.where(g == v, 2.0 + (b - r) / safe, h)
    h = torch.where(b == v, 4.0 + (r - g) / safe, h)
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, v], dim=-1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """HSV in [0, 1] → RGB in [0, 1], channels last, as ``skimage.color.hsv2rgb``."""
    h, s, v = hsv.unbind(dim=-1)
    sector = torch.floor(h * 6.0)
    f = h * 6.0 - sector
    sector = sector.long() % 6
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    choices = torch.stack(
        [
            torch.stack([v, t, p], dim=-1),
            torch.stack([q, v, p], dim=-1),
            torch.stack([p, v, t], dim=-1),
            torch.stack([p, q, v], dim=-1),
            torch.stack([t, p, v], dim=-1),
            torch.stack([v, p, q], dim=-1),
        ]
    )  # (6, ..., 3)
    index = sector[None, ..., None].expand(1, *sector.shape, 3)
    return choices.gather(0, index)[0]
