"""Training augmentation done on whole batches on the device, seeded, with no per-sample Python."""

from __future__ import annotations

from collections.abc import Callable

import torch


def pad_crop_flip(images: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Zero-pad ``pad`` pixels, crop back to the size at a random offset, flip half left-right.

    Args:
        images: (B, C, H, W), any dtype (uint8 stays uint8).
        generator: on the images' device; fixes every offset and flip.
    """
    b, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))  # (B, C, H+2p, W+2p), zeros
    top = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device=images.device)
    left = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device=images.device)
    flip = torch.rand((b, 1), generator=generator, device=images.device) < 0.5
    rows = top + torch.arange(h, device=images.device)  # (B, H)
    columns = torch.arange(w, device=images.device).expand(b, w)
    columns = left + torch.where(flip, w - 1 - columns, columns)  # (B, W)
    batch = torch.arange(b, device=images.device).view(b, 1, 1, 1)
    channel = torch.arange(c, device=images.device).view(1, c, 1, 1)
    return padded[batch, channel, rows.view(b, 1, h, 1), columns.view(b, 1, 1, w)]  # (B, C, H, W)


AUGMENTATIONS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "pad_crop_flip": pad_crop_flip,
}
