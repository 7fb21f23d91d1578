"""Linear filters and bilinear sampling as scipy, skimage and OpenCV apply them, in torch.

Each filter is folded with its library's border rule into small dense matrices applied by matmul,
far faster on 32×32 planes than a convolution:

- ``_border_indices``: the border rules — scipy/skimage 'nearest' and cv2 BORDER_REPLICATE,
  cv2's default BORDER_REFLECT_101, scipy/skimage 'reflect';
- ``correlation_matrix``, ``_filter_separable``: any separable correlation with those borders;
- ``gaussian_taps``, ``_skimage_gaussian``: ``skimage.filters.gaussian`` (scipy's normalised 1-D
  Gaussian of radius int(truncate·σ + 0.5));
- ``_box3``: ``cv2.blur(x, (3, 3))``;
- ``_bilinear_sample``: scipy ``map_coordinates(order=1)`` and ``cv2.warpAffine`` bilinear reads.

Tested by hand in ``tests/test_corruptions.py`` (the border rules; a correlation matrix against its
borders), and through gaussian_blur, defocus_blur and glass_blur against the published code's outputs
(``tests/test_corruptions_fidelity.py``: the deterministic ones within 1 grey level, glass_blur by
its mean change).
"""

from __future__ import annotations

import functools

import numpy as np
import torch


def _border_indices(index: torch.Tensor, size: int, border: str) -> torch.Tensor:
    """Where a filter reads integer positions ``index`` outside [0, size) under each library's
    border rule (one reflection period, so any distance works):

    - 'replicate': skimage/scipy 'nearest', cv2 BORDER_REPLICATE: a a | a b c
    - 'reflect101': cv2's default BORDER_REFLECT_101: c b | a b c
    - 'symmetric': scipy/skimage 'reflect': b a | a b c
    """
    if border == "replicate":
        return index.clamp(0, size - 1)
    if border == "reflect101":
        period = max(2 * size - 2, 1)
        index = index.abs() % period
        return torch.where(index >= size, period - index, index)
    if border == "symmetric":
        index = index % (2 * size)
        return torch.where(index >= size, 2 * size - 1 - index, index)
    raise ValueError(f"unknown border rule {border!r}")


@functools.cache
def correlation_matrix(size: int, taps: tuple[float, ...], border: str) -> torch.Tensor:
    """(size, size) float32 M with ``M @ v`` = v correlated with the centred ``taps``, borders per
    ``border`` ('replicate', 'reflect101' or 'symmetric'). Folding the border into a small dense
    matrix makes every separable filter two matmuls, far faster on 32×32 planes than a convolution."""
    radius = len(taps) // 2
    matrix = torch.zeros(size, size, dtype=torch.float64)
    for k, weight in enumerate(taps):  # tap k of output i reads position i + k − radius
        sources = _border_indices(torch.arange(size) + k - radius, size, border)
        matrix.index_put_((torch.arange(size), sources), torch.tensor(weight, dtype=torch.float64), accumulate=True)
    return matrix.float()


def _filter_separable(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Apply ``rows`` (H, H) down and ``cols`` (W, W) across every channel of floats (N, H, W, C)."""
    planes = x.permute(0, 3, 1, 2)  # (N, C, H, W)
    planes = rows.to(x.device, x.dtype) @ (planes @ cols.to(x.device, x.dtype).t())
    return planes.permute(0, 2, 3, 1)


def gaussian_taps(sigma: float, truncate: float = 4.0) -> tuple[float, ...]:
    """scipy/skimage's normalised 1-D Gaussian: radius int(truncate·σ + 0.5)."""
    radius = int(truncate * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (offsets / sigma) ** 2)
    return tuple(float(t) for t in taps / taps.sum())


def _skimage_gaussian(x: torch.Tensor, sigma: float, border: str = "replicate", truncate: float = 4.0) -> torch.Tensor:
    """``skimage.filters.gaussian(x, sigma, mode, truncate, channel_axis=-1)`` on floats (N, H, W, C);
    skimage's default edge mode 'nearest' is 'replicate' here."""
    taps = gaussian_taps(sigma, truncate)
    _, h, w, _ = x.shape
    return _filter_separable(x, correlation_matrix(h, taps, border), correlation_matrix(w, taps, border))


def _bilinear_sample(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, border: str) -> torch.Tensor:
    """Sample floats (N, H, W, C) at fractional positions ``rows``, ``cols`` (N, H, W), bilinearly, with
    the neighbours outside the image read by ``border``'s rule (scipy ``map_coordinates(order=1)``,
    ``cv2.warpAffine``)."""
    n, h, w, c = x.shape
    flat = x.reshape(n, h * w, c)
    top, left = rows.floor(), cols.floor()
    down, across = (rows - top)[..., None], (cols - left)[..., None]  # (N, H, W, 1)
    top, left = top.long(), left.long()
    r = (_border_indices(top, h, border), _border_indices(top + 1, h, border))
    q = (_border_indices(left, w, border), _border_indices(left + 1, w, border))

    def at(i: int, j: int) -> torch.Tensor:
        index = (r[i] * w + q[j]).reshape(n, h * w, 1).expand(n, h * w, c)
        return flat.gather(1, index).reshape(n, h, w, c)

    return (at(0, 0) * (1 - across) + at(0, 1) * across) * (1 - down) + (
        at(1, 0) * (1 - across) + at(1, 1) * across
    ) * down


def _box3(x: torch.Tensor) -> torch.Tensor:
    """``cv2.blur(x, (3, 3))`` of float planes (N, H, W): the 3×3 mean with reflect-101 borders."""
    _, h, w = x.shape
    third = (1.0 / 3.0,) * 3
    rows, cols = correlation_matrix(h, third, "reflect101"), correlation_matrix(w, third, "reflect101")
    return rows.to(x.device, x.dtype) @ x @ cols.to(x.device, x.dtype).t()
