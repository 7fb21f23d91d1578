"""The blur corruptions: defocus_blur, glass_blur, motion_blur, zoom_blur and gaussian_blur."""

from __future__ import annotations

import functools

import numpy as np
import torch

from .filters import _filter_separable, _skimage_gaussian, correlation_matrix
from .imagemagick_motion import magick_motion_blur
from .parameters import DEFOCUS, GAUSSIAN_BLUR_SIGMA, GLASS, MOTION_BLUR, ZOOM_STOPS, _to_uint8
from .scipy_zoom import clipped_zoom_matrix


def gaussian_blur(images: torch.Tensor, intensity: int, generator: torch.Generator) -> torch.Tensor:
    """Per-channel Gaussian blur as ``skimage.filters.gaussian`` (truncate 4σ, edge mode 'nearest')."""
    return _to_uint8(_skimage_gaussian(images.float() / 255.0, GAUSSIAN_BLUR_SIGMA[intensity - 1]))


def glass_blur(images: torch.Tensor, intensity: int, generator: torch.Generator) -> torch.Tensor:
    """Blur, locally shuffle pixels, blur again, with the published code's quirks.

    Its offsets come from ``randint(-1, 1)`` (so dy, dx ∈ {−1, 0}), its row/column loop runs from
    size − 1 down to 2, and its tuple "swap" on numpy views is a copy: each visited pixel takes its
    neighbour's value. Visited in that order, every pixel reads a not-yet-visited neighbour, so one
    iteration is one parallel gather here.
    """
    sigma, delta, iterations = GLASS[intensity - 1]
    x = _to_uint8(_skimage_gaussian(images.float() / 255.0, sigma))  # (N, H, W, C)
    n, h, w, _ = x.shape
    rows = torch.arange(h, device=x.device).view(1, h, 1).expand(n, h, w)
    cols = torch.arange(w, device=x.device).view(1, 1, w).expand(n, h, w)
    inside = (rows > delta) & (rows < h - delta + 1) & (cols > delta) & (cols < w - delta + 1)
    for _ in range(iterations):
        dy, dx = (
            torch.randint(-delta, delta, (n, h, w), generator=generator, device=generator.device) for _ in range(2)
        )
        source_r = torch.where(inside, rows + dy, rows)
        source_c = torch.where(inside, cols + dx, cols)
        x = x[torch.arange(n, device=x.device).view(n, 1, 1), source_r, source_c]
    return _to_uint8(_skimage_gaussian(x.float() / 255.0, sigma))


def disk_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """The published ``disk``: an aliased disk on a 17×17 grid (radius ≤ 8), normalised, then blurred
    by a 3×3 Gaussian of sigma ``alias_blur`` (what ``cv2.GaussianBlur`` does away from the borders)."""
    grid = torch.arange(-8, 9, dtype=torch.float64)
    y, x = torch.meshgrid(grid, grid, indexing="ij")
    disk = ((x**2 + y**2) <= radius**2).double()
    disk = disk / disk.sum()  # (17, 17)
    taps = torch.exp(-(torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64) ** 2) / (2 * alias_blur**2))
    taps = taps / taps.sum()
    blur = (taps[:, None] * taps[None, :]).view(1, 1, 3, 3)
    return torch.nn.functional.conv2d(disk.view(1, 1, 17, 17), blur, padding=1)[0, 0]  # (17, 17)


@functools.cache
def _defocus_operators(height: int, width: int, intensity: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The defocus kernel as a short sum of separable terms, each a (rows, cols) matrix pair.

    The 17×17 kernel is zero outside a 3×3 or 5×5 core at CIFAR radii; the core's singular value
    decomposition writes it exactly (to float precision) as Σ s·u vᵀ, and each rank-one term is a
    separable filter with cv2's reflect-101 borders folded in.
    """
    kernel = disk_kernel(*DEFOCUS[intensity - 1])
    rows, cols = torch.nonzero(kernel > 1e-12, as_tuple=True)
    half = int(max(8 - rows.min(), rows.max() - 8, 8 - cols.min(), cols.max() - 8))
    core = kernel[8 - half : 9 + half, 8 - half : 9 + half]  # (2·half + 1, 2·half + 1), centred
    u, s, vh = torch.linalg.svd(core)
    terms = []
    for rank in range(len(s)):
        if s[rank] <= 1e-9 * s[0]:
            break
        down = tuple(float(t) for t in u[:, rank] * s[rank])
        across = tuple(float(t) for t in vh[rank])
        terms.append((correlation_matrix(height, down, "reflect101"), correlation_matrix(width, across, "reflect101")))
    return terms


def defocus_blur(images: torch.Tensor, intensity: int, generator: torch.Generator) -> torch.Tensor:
    """Per-channel correlation with the blurred disk, borders reflected (``cv2.filter2D``). Deterministic."""
    _, h, w, _ = images.shape
    x = images.float() / 255.0
    blurred = sum(_filter_separable(x, rows, cols) for rows, cols in _defocus_operators(h, w, intensity))
    return _to_uint8(blurred)


def zoom_factors(intensity: int) -> list[float]:
    """The published factors: float ``np.arange(1, stop, 0.01)``, which yields 7, 12, 16, 21, 26 of them."""
    return [float(z) for z in np.arange(1, ZOOM_STOPS[intensity - 1], 0.01)]


@functools.cache
def zoom_operator(height: int, width: int, intensity: int) -> torch.Tensor:
    """(H·W, H·W) float32 K with vec(zoom_blur(x)) = K vec(x) for one channel: every zoom is linear,
    rows ⊗ columns, so their mean with the identity is one matrix and the blur one matmul."""
    factors = zoom_factors(intensity)
    total = torch.eye(height * width, dtype=torch.float64)
    for zoom in factors:
        total += torch.kron(clipped_zoom_matrix(height, zoom), clipped_zoom_matrix(width, zoom))
    return (total / (len(factors) + 1)).float()


def zoom_blur(images: torch.Tensor, intensity: int, generator: torch.Generator) -> torch.Tensor:
    """Mean of the image and its centre zooms at the published factors. Deterministic."""
    n, h, w, c = images.shape
    operator = zoom_operator(h, w, intensity).to(images.device)  # (H·W, H·W)
    planes = images.permute(0, 3, 1, 2).reshape(n * c, h * w).float() / 255.0  # (N·C, H·W)
    blurred = planes @ operator.t()
    return _to_uint8(blurred.reshape(n, c, h, w).permute(0, 2, 3, 1))


def motion_blur_with_angles(images: torch.Tensor, intensity: int, angles: torch.Tensor) -> torch.Tensor:
    """``motion_blur`` with the angles (N,) in degrees given, e.g. the reference's recorded draws."""
    radius, sigma = MOTION_BLUR[intensity - 1]
    return magick_motion_blur(images, radius, sigma, angles)


def motion_blur(images: torch.Tensor, intensity: int, generator: torch.Generator) -> torch.Tensor:
    """ImageMagick's motion blur (written in torch, no ImageMagick) at a U(−45°, 45°) angle per image."""
    angles = torch.rand(len(images), generator=generator, device=generator.device, dtype=torch.float64) * 90 - 45
    return motion_blur_with_angles(images, intensity, angles)
