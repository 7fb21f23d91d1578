"""The weather corruptions: snow, frost, fog, brightness and spatter, with fog's plasma
fractal, frost's photographs and spatter's water mask."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from .filters import _border_indices, _box3, _skimage_gaussian
from .imagemagick_motion import magick_motion_blur
from .opencv_canny import canny
from .opencv_chamfer import chamfer_distance
from .opencv_equalize_hist import equalize_hist
from .parameters import BRIGHTNESS_SHIFT, FOG, FROST, SNOW, SPATTER, _to_uint8
from .scipy_zoom import clipped_zoom_matrix
from .skimage_hsv import hsv_to_rgb, rgb_to_hsv


def plasma_fractal(n: int, mapsize: int, wibble_decay: float, generator: torch.Generator) -> torch.Tensor:
    """``n`` diamond-square height maps in [0, 1], (n, mapsize, mapsize), as the published
    ``plasma_fractal`` (with its noise amplitude wibble · U(−wibble, wibble), i.e. wibble², kept)."""
    device = generator.device
    grid = torch.zeros(n, mapsize, mapsize, dtype=torch.float64, device=device)
    step, wibble = mapsize, 100.0

    def wibbled_mean(total: torch.Tensor) -> torch.Tensor:
        noise = torch.rand(total.shape, generator=generator, device=device, dtype=torch.float64) * 2 - 1
        return total / 4 + wibble * wibble * noise

    while step >= 2:
        half = step // 2
        corners = grid[:, 0::step, 0::step]
        squares = corners + corners.roll(-1, dims=1)
        squares = squares + squares.roll(-1, dims=2)
        grid[:, half::step, half::step] = wibbled_mean(squares)
        centres = grid[:, half::step, half::step]
        corners = grid[:, 0::step, 0::step]
        grid[:, 0::step, half::step] = wibbled_mean(
            centres + centres.roll(1, dims=1) + corners + corners.roll(-1, dims=2)
        )
        grid[:, half::step, 0::step] = wibbled_mean(
            centres + centres.roll(1, dims=2) + corners + corners.roll(-1, dims=1)
        )
        step //= 2
        wibble /= wibble_decay
    grid = grid - grid.amin(dim=(1, 2), keepdim=True)
    return grid / grid.amax(dim=(1, 2), keepdim=True)


def fog(images: torch.Tensor, intensity: int, generator: torch.Generator) -> torch.Tensor:
    """Add a plasma-fractal haze per image, rescaled by the image's maximum."""
    strength, decay = FOG[intensity - 1]
    n, h, w, _ = images.shape
    mapsize = 1 << (max(h, w) - 1).bit_length()  # the smallest power of two ≥ the image (32 for CIFAR)
    x = images.double() / 255.0
    peak = x.amax(dim=(1, 2, 3), keepdim=True)  # (N, 1, 1, 1)
    haze = plasma_fractal(n, mapsize, decay, generator)[:, :h, :w, None].to(x.device)  # (N, H, W, 1)
    return _to_uint8((x + strength * haze) * peak / (peak + strength))


def brightness(images: torch.Tensor, intensity: int, generator: torch.Generator) -> torch.Tensor:
    """HSV value + c, clipped. Deterministic."""
    hsv = rgb_to_hsv(images.float() / 255.0)
    hsv[..., 2] = (hsv[..., 2] + BRIGHTNESS_SHIFT[intensity - 1]).clamp(0.0, 1.0)
    return _to_uint8(hsv_to_rgb(hsv))


def snow(images: torch.Tensor, intensity: int, generator: torch.Generator) -> torch.Tensor:
    """Snowflakes: a thresholded, zoomed Gaussian field, motion-blurred at U(−135°, −45°) and added with
    its 180° rotation to an image brightened towards 1.5·gray + 0.5."""
    loc, scale, zoom, threshold, radius, sigma, keep = SNOW[intensity - 1]
    n, h, w, _ = images.shape
    device = generator.device
    flakes = torch.randn((n, h, w), generator=generator, device=device, dtype=torch.float64) * scale + loc
    angles = torch.rand(n, generator=generator, device=device, dtype=torch.float64) * 90 - 135
    flakes = clipped_zoom_matrix(h, zoom).to(device) @ flakes @ clipped_zoom_matrix(w, zoom).to(device).t()
    flakes = torch.where(flakes < threshold, 0.0, flakes)
    flakes = (flakes.clamp(0, 1) * 255).to(torch.uint8)[..., None]  # the 8-bit 'L' image, truncated
    flakes = magick_motion_blur(flakes.to(images.device), radius, sigma, angles).double() / 255.0  # (N, H, W, 1)
    x = images.float() / 255.0
    gray = x[..., :1] * 0.299 + x[..., 1:2] * 0.587 + x[..., 2:3] * 0.114  # cv2 RGB2GRAY, (N, H, W, 1)
    x = keep * x + (1 - keep) * torch.maximum(x, gray * 1.5 + 0.5)
    return _to_uint8(x + flakes + flakes.flip(1, 2))


@functools.cache
def frost_textures() -> tuple[torch.Tensor, torch.Tensor]:
    """The five frost photographs of the published code, reduced as its CIFAR code reduces them, as one
    uint8 tensor (5, 120, 180, 3) padded with zeros, and their sizes, long (5, 2) of (rows, columns).
    See ``frost/README.md``: they are the published files (Apache License 2.0), shipped in this package."""
    from PIL import Image

    folder = Path(__file__).parent.with_name("frost")  # trainables/data/frost
    arrays = [np.asarray(Image.open(folder / f"frost{i}.png").convert("RGB")) for i in range(1, 6)]
    stacked = torch.zeros(5, max(a.shape[0] for a in arrays), max(a.shape[1] for a in arrays), 3, dtype=torch.uint8)
    for i, array in enumerate(arrays):
        stacked[i, : array.shape[0], : array.shape[1]] = torch.from_numpy(array.copy())
    return stacked, torch.tensor([a.shape[:2] for a in arrays])


def frost_with_crops(images: torch.Tensor, intensity: int, crops: torch.Tensor) -> torch.Tensor:
    """``frost`` with the crops given: (N, 3) integer rows of (texture 0–4, top row, left column)."""
    weight_image, weight_frost = FROST[intensity - 1]
    n, h, w, _ = images.shape
    textures = frost_textures()[0].to(images.device)
    crops = crops.to(images.device).long()
    rows = crops[:, 1].view(n, 1, 1) + torch.arange(h, device=images.device).view(1, h, 1)
    cols = crops[:, 2].view(n, 1, 1) + torch.arange(w, device=images.device).view(1, 1, w)
    frost_crop = textures[crops[:, 0].view(n, 1, 1), rows, cols]  # (N, H, W, 3)
    mixed = weight_image * images.double() + weight_frost * frost_crop.double()
    return mixed.clamp(0, 255).to(torch.uint8)


def frost(images: torch.Tensor, intensity: int, generator: torch.Generator) -> torch.Tensor:
    """Blend each image with a random crop of one of five frost textures (the published photographs,
    see ``frost_textures``). Images must be smaller than 63×105, the smallest texture, as CIFAR's are."""
    n, h, w, _ = images.shape
    sizes = frost_textures()[1]  # (5, 2)
    if h >= sizes[:, 0].min() or w >= sizes[:, 1].min():
        raise ValueError(f"frost uses CIFAR's reduced textures and needs images under 63×105 pixels, got {h}×{w}")
    device = generator.device
    texture = torch.randint(0, 5, (n,), generator=generator, device=device)
    sizes = sizes.to(device)[texture]  # (N, 2)
    # numpy's randint(0, size − 32) excludes its upper end: top rows 0 … rows − 33
    top = (torch.rand(n, generator=generator, device=device, dtype=torch.float64) * (sizes[:, 0] - h)).long()
    left = (torch.rand(n, generator=generator, device=device, dtype=torch.float64) * (sizes[:, 1] - w)).long()
    return frost_with_crops(images, intensity, torch.stack([texture, top, left], dim=1))


_EMBOSS = ((-2.0, -1.0, 0.0), (-1.0, 1.0, 1.0), (0.0, 1.0, 2.0))


def _water_shading(liquid8: torch.Tensor) -> torch.Tensor:
    """The published water mask's shading, (N, H, W) float32: distance to the puddles' Canny edges,
    truncated at 20, blurred, histogram-equalised, embossed and blurred, as its OpenCV calls do."""
    n, h, w = liquid8.shape
    distance = chamfer_distance(canny(liquid8, 50, 150)).clamp(max=20.0)
    distance = _box3(distance).to(torch.uint8)  # astype(np.uint8) truncates
    distance = equalize_hist(distance).float()
    padded = distance[:, _border_indices(torch.arange(-1, h + 1), h, "reflect101")][
        :, :, _border_indices(torch.arange(-1, w + 1), w, "reflect101")
    ]  # (N, H+2, W+2)
    embossed = sum(_EMBOSS[i][j] * padded[:, i : i + h, j : j + w] for i in range(3) for j in range(3) if _EMBOSS[i][j])
    embossed = embossed.clamp(0, 255)  # cv2.filter2D to CV_8U saturates
    return torch.round(_box3(embossed)).clamp(0, 255)  # cv2.blur on uint8 rounds


def spatter(images: torch.Tensor, intensity: int, generator: torch.Generator) -> torch.Tensor:
    """Water drops (intensities 1–3: shaded pale-turquoise puddles) or mud (4–5: brown blots) where a
    blurred Gaussian field passes a threshold."""
    loc, scale, sigma, threshold, strength, mud = SPATTER[intensity - 1]
    n, h, w, _ = images.shape
    x = images.float() / 255.0
    liquid = torch.randn((n, h, w, 1), generator=generator, device=generator.device, dtype=torch.float64) * scale + loc
    liquid = _skimage_gaussian(liquid.to(images.device), sigma)[..., 0]  # (N, H, W)
    liquid = torch.where(liquid < threshold, 0.0, liquid)
    if not mud:
        liquid8 = (liquid * 255).clamp(0, 255).to(torch.uint8)
        mask = liquid8.float() * _water_shading(liquid8)  # (N, H, W)
        peak = mask.amax(dim=(1, 2), keepdim=True)
        mask = mask / torch.where(peak > 0, peak, torch.ones_like(peak)) * strength
        colour = torch.tensor([175.0, 238.0, 238.0], device=images.device) / 255.0  # channel order as published
        return _to_uint8(x + mask[..., None] * colour)
    blots = _skimage_gaussian(torch.where(liquid > threshold, 1.0, 0.0).float()[..., None], strength)  # (N, H, W, 1)
    blots = torch.where(blots < 0.8, 0.0, blots)
    colour = torch.tensor([63.0, 42.0, 20.0], device=images.device) / 255.0
    return _to_uint8(x * (1 - blots) + colour * blots)
