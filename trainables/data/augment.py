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
    device = images.device
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))  # (B, C, Hp, Wp), zeros
    hp, wp = h + 2 * pad, w + 2 * pad
    top = torch.randint(0, 2 * pad + 1, (b, 1, 1), generator=generator, device=device)
    left = torch.randint(0, 2 * pad + 1, (b, 1, 1), generator=generator, device=device)
    flip = torch.rand((b, 1, 1), generator=generator, device=device) < 0.5
    columns = torch.arange(w, device=device).view(1, 1, w)
    columns = left + torch.where(flip, w - 1 - columns, columns)  # (B, 1, W)
    rows = top + torch.arange(h, device=device).view(1, h, 1)  # (B, H, 1)
    # One gather per batch over the flattened padded images: each output pixel's source index,
    # shared by the channels (5x faster on CPU than indexing with four broadcast index tensors).
    source = (rows * wp + columns).view(b, 1, h * w)  # (B, 1, H·W)
    cropped = padded.reshape(b, c, hp * wp).gather(2, source.expand(b, c, h * w))  # (B, C, H·W)
    return cropped.view(b, c, h, w)


AUGMENTATIONS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "pad_crop_flip": pad_crop_flip,
}
