"""OpenCV's histogram equalisation in torch, for spatter's water mask.

Reproduces ``cv2.equalizeHist`` of uint8 planes, each on its own histogram: its lookup table from the
cumulative counts above the darkest value present, scaled in float32 and rounded, and a plane of one
value left as it is.

Tested by hand in ``tests/test_corruptions.py``, and through spatter by its mean change per
intensity against the published code's outputs (``tests/test_corruptions_fidelity.py``).
"""

from __future__ import annotations

import torch


def equalize_hist(images: torch.Tensor) -> torch.Tensor:
    """``cv2.equalizeHist`` of uint8 planes (N, H, W), each plane on its own histogram."""
    n = images.shape[0]
    flat = images.reshape(n, -1).long()
    counts = torch.zeros(n, 256, dtype=torch.long, device=images.device).scatter_add_(1, flat, torch.ones_like(flat))
    first = (counts > 0).long().argmax(dim=1, keepdim=True)  # the darkest value present, (N, 1)
    first_count = counts.gather(1, first)
    total = flat.shape[1]
    scale = 255.0 / (total - first_count).clamp(min=1).float()  # float32, as OpenCV
    table = torch.round(torch.cumsum(counts, dim=1).sub(first_count).float() * scale).clamp(0, 255)
    table = torch.where(torch.arange(256, device=images.device) <= first, 0.0, table)
    equalised = table.gather(1, flat).to(torch.uint8).reshape(images.shape)
    constant = (first_count == total).view(n, *([1] * (images.dim() - 1)))  # one value only: left as it is
    return torch.where(constant, images, equalised)
