"""OpenCV's Canny edge detector in torch, for spatter's water mask.

Reproduces ``cv2.Canny(image, low, high)`` with its defaults (3×3 Sobel, L1 gradient magnitude):
replicated borders, OpenCV's integer tangent test for the non-maximum suppression's direction bins,
and hysteresis over 8-connected neighbours.

Tested by hand in ``tests/test_corruptions.py`` (the outline of a square), and through spatter by
its mean change per intensity against the published code's outputs
(``tests/test_corruptions_fidelity.py``).
"""

from __future__ import annotations

import torch


def canny(images: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``cv2.Canny(images, low, high)`` (3×3 Sobel, L1 magnitude) of uint8 planes (N, H, W) → bool edges.

    Sobel with replicated borders; non-maximum suppression along the gradient's direction binned at
    22.5° and 67.5° as OpenCV bins it (strict > on one side, ≥ on the other, zero outside the image);
    hysteresis: every suppressed-in pixel above ``low`` 8-connected to one above ``high``.
    """
    n, h, w = images.shape
    x = torch.nn.functional.pad(images.float()[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]  # (N, H+2, W+2)
    dx = (x[:, :-2, 2:] + 2 * x[:, 1:-1, 2:] + x[:, 2:, 2:]) - (x[:, :-2, :-2] + 2 * x[:, 1:-1, :-2] + x[:, 2:, :-2])
    dy = (x[:, 2:, :-2] + 2 * x[:, 2:, 1:-1] + x[:, 2:, 2:]) - (x[:, :-2, :-2] + 2 * x[:, :-2, 1:-1] + x[:, :-2, 2:])
    magnitude = dx.abs() + dy.abs()  # (N, H, W)
    m = torch.nn.functional.pad(magnitude, (1, 1, 1, 1))  # zeros outside

    def neighbour(dr: int, dc: int) -> torch.Tensor:
        return m[:, 1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]

    # OpenCV's integer tangent test: |dy|·2^15 against |dx|·tan(22.5°)·2^15 and |dx|·tan(67.5°)·2^15
    tg22 = float(int(0.4142135623730950488016887242097 * (1 << 15) + 0.5))
    xs, ys = dx.abs(), dy.abs() * (1 << 15)
    tg22x = xs * tg22
    tg67x = tg22x + xs * (1 << 16)
    horizontal = (magnitude > neighbour(0, -1)) & (magnitude >= neighbour(0, 1))
    vertical = (magnitude > neighbour(-1, 0)) & (magnitude >= neighbour(1, 0))
    same_sign = (dx * dy) >= 0  # (dx ^ dy) >= 0 for integers
    diagonal = torch.where(
        same_sign,
        (magnitude > neighbour(-1, -1)) & (magnitude > neighbour(1, 1)),
        (magnitude > neighbour(-1, 1)) & (magnitude > neighbour(1, -1)),
    )
    peak = torch.where(ys < tg22x, horizontal, torch.where(ys > tg67x, vertical, diagonal))
    candidate = peak & (magnitude > low)
    edges = candidate & (magnitude > high)
    while True:  # hysteresis, grown one ring of 8 neighbours at a time
        grown = torch.nn.functional.max_pool2d(edges.float()[:, None], 3, stride=1, padding=1)[:, 0] > 0
        grown &= candidate
        if torch.equal(grown, edges):
            return edges
        edges = grown
