"""The 19 CIFAR-10-C corruptions (Hendrycks & Dietterich, 2019) in batched torch, CPU or CUDA.

Every corruption takes a batch of images ``(N, H, W, C)`` uint8 and a intensity 1–5 and returns a
batch of the same shape and dtype, on the same device. Random ones draw from a ``torch.Generator``
so that a (seed, corruption, intensity) triple always gives the same images. Parameters are the
published CIFAR ones (``make_cifar_c.py``); like the published pipeline (``np.uint8`` on its float
output), results are truncated to uint8, not rounded.

Fidelity, against the published code's outputs in ``shared/reference/cifar_c``
(``tests/test_corruptions_fidelity.py``):

- the eight deterministic ones match it: pixelate, jpeg_compression and contrast bit for bit;
  brightness, saturate, gaussian_blur, defocus_blur and zoom_blur off by at most 1 grey level,
  with a mean absolute difference of at most 0.081 (saturate's);
- motion_blur and frost, fed the reference's recorded random draws, match it bit for bit
  (ImageMagick's motion blur is written here in torch; the frost photographs ship in ``frost/``);
- the other random ones match its mean change per intensity within a few percent.

Speed comes from turning each filter into small dense matrices (borders folded in) applied by
matmul, and from working ``CHUNK`` images at a time.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

INTENSITIES = (1, 2, 3, 4, 5)

# Published CIFAR parameters (make_cifar_c.py), one per intensity 1..5.
GAUSSIAN_NOISE_STD = (0.04, 0.06, 0.08, 0.09, 0.10)  # additive N(0, c) on the [0, 1] scale
CONTRAST_FACTOR = (0.75, 0.5, 0.4, 0.3, 0.15)  # scale around each image's per-channel mean
SHOT_NOISE_RATE = (500, 250, 100, 75, 50)  # poisson(x · c) / c on the [0, 1] scale
IMPULSE_AMOUNT = (0.01, 0.02, 0.03, 0.05, 0.07)  # salt-and-pepper probability per pixel and channel
SPECKLE_STD = (0.06, 0.1, 0.12, 0.16, 0.2)  # x + x · N(0, c)
GLASS = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))  # sigma, max_delta, iterations
FOG = ((0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75))  # fractal strength, wibble decay
BRIGHTNESS_SHIFT = (0.05, 0.1, 0.15, 0.2, 0.3)  # added to HSV value
SATURATE = ((0.3, 0.0), (0.1, 0.0), (1.5, 0.0), (2.0, 0.1), (2.5, 0.2))  # HSV saturation · a + b
GAUSSIAN_BLUR_SIGMA = (0.4, 0.6, 0.7, 0.8, 1.0)  # skimage.filters.gaussian sigma, per channel
PIXELATE_SCALE = (0.95, 0.9, 0.85, 0.75, 0.65)  # BOX-resize down to int(size · c), then back up
ZOOM_STOPS = (1.06, 1.11, 1.16, 1.21, 1.26)  # zoom factors np.arange(1, stop, 0.01), float quirks kept
JPEG_QUALITY = (80, 65, 58, 50, 40)
DEFOCUS = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1))  # disk radius, its 3×3 blur sigma
MOTION_BLUR = ((6, 1.0), (6, 1.5), (6, 2.0), (8, 2.0), (9, 2.5))  # ImageMagick radius, sigma; angle U(−45°, 45°)
# normal loc, scale; zoom; threshold; motion-blur radius, sigma (angle U(−135°, −45°)); weight of the image
SNOW = (
    (0.1, 0.2, 1.0, 0.6, 8, 3, 0.95),
    (0.1, 0.2, 1.0, 0.5, 10, 4, 0.9),
    (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
    (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
    (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
)
# × the image size (32 for CIFAR): displacement scale alpha, its Gaussian sigma, the affine jitter
ELASTIC = ((0.0, 0.0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))
# normal loc, scale; Gaussian sigma; threshold; water intensity or mud mask sigma; 0 = water, 1 = mud
SPATTER = (
    (0.62, 0.1, 0.7, 0.7, 0.5, 0),
    (0.65, 0.1, 0.8, 0.7, 0.5, 0),
    (0.65, 0.3, 1.0, 0.69, 0.5, 0),
    (0.65, 0.1, 0.7, 0.69, 0.6, 1),
    (0.65, 0.1, 0.5, 0.68, 0.6, 1),
)
FROST = ((1.0, 0.2), (1.0, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))  # weight of the image, of the frost


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats → uint8 by clipping, scaling and truncating, as ``np.uint8(clip(x)·255)``."""
    return (x.clamp(0.0, 1.0) * 255.0).to(torch.uint8)


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


def contrast(images: torch.Tensor, intensity: int, generator: torch.Generator) -> torch.Tensor:
    """(x − m)·c + m with m each image's per-channel mean, clipped to [0, 1]. Deterministic."""
    c = CONTRAST_FACTOR[intensity - 1]
    x = images.float() / 255.0  # (N, H, W, C)
    means = x.mean(dim=(1, 2), keepdim=True)  # (N, 1, 1, C)
    return _to_uint8((x - means) * c + means)


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


def brightness(images: torch.Tensor, intensity: int, generator: torch.Generator) -> torch.Tensor:
    """HSV value + c, clipped. Deterministic."""
    hsv = rgb_to_hsv(images.float() / 255.0)
    hsv[..., 2] = (hsv[..., 2] + BRIGHTNESS_SHIFT[intensity - 1]).clamp(0.0, 1.0)
    return _to_uint8(hsv_to_rgb(hsv))


def saturate(images: torch.Tensor, intensity: int, generator: torch.Generator) -> torch.Tensor:
    """HSV saturation · a + b, clipped. Deterministic."""
    a, b = SATURATE[intensity - 1]
    hsv = rgb_to_hsv(images.float() / 255.0)
    hsv[..., 1] = (hsv[..., 1] * a + b).clamp(0.0, 1.0)
    return _to_uint8(hsv_to_rgb(hsv))


def gaussian_blur(images: torch.Tensor, intensity: int, generator: torch.Generator) -> torch.Tensor:
    """Per-channel Gaussian blur as ``skimage.filters.gaussian`` (truncate 4σ, edge mode 'nearest')."""
    return _to_uint8(_skimage_gaussian(images.float() / 255.0, GAUSSIAN_BLUR_SIGMA[intensity - 1]))


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


def pixelate(images: torch.Tensor, intensity: int, generator: torch.Generator) -> torch.Tensor:
    """BOX-downsample to int(size · c) and back, bit-exact with the published PIL pipeline.

    The downsampling is Pillow's horizontal pass then vertical pass, each rounded to 8 bits; the sums
    stay below 2^53, so float64 matmuls through BLAS give its integer results exactly. BOX upsampling
    copies one source pixel per output pixel, so the way back is an index.
    """
    _, h, w, _ = images.shape
    small = int(h * PIXELATE_SCALE[intensity - 1])
    # contiguous planes, so that each pass is one 2-D matmul over all rows
    planes = images.permute(0, 3, 1, 2).to(torch.float64, memory_format=torch.contiguous_format)  # (N, C, H, W)
    planes = _round_like_pillow(planes @ _pil_box_matrix(w, small, images.device).t())  # (N, C, H, s)
    planes = planes.transpose(2, 3).contiguous()  # (N, C, s, H)
    planes = _round_like_pillow(planes @ _pil_box_matrix(h, small, images.device).t())  # (N, C, s_w, s_h)
    reduced = planes.permute(0, 3, 2, 1).to(torch.uint8)  # (N, s_h, s_w, C)
    rows = _pil_box_upscale_index(small, h).to(images.device)
    cols = _pil_box_upscale_index(small, w).to(images.device)
    return reduced.index_select(1, rows).index_select(2, cols)


def jpeg_compression(images: torch.Tensor, intensity: int, generator: torch.Generator) -> torch.Tensor:
    """JPEG round trip at the published quality with torchvision's libjpeg, batched. Deterministic;
    bit-exact with the published PIL round trip here.

    It always runs on the host, for CUDA images too: nvjpeg's encoder quantises differently (up to 53
    grey levels from PIL's result, measured on an H100) and is slower than libjpeg on 32×32 images.
    torchvision 0.29 deprecates its image codecs in favour of TorchCodec; the project pins 0.29.1.
    """
    from torchvision.io import decode_jpeg, encode_jpeg

    chw = list(images.permute(0, 3, 1, 2).contiguous().cpu())  # N × (C, H, W)
    decoded = decode_jpeg(encode_jpeg(chw, quality=JPEG_QUALITY[intensity - 1]))
    return torch.stack(decoded).permute(0, 2, 3, 1).contiguous().to(images.device)


def zoom_factors(intensity: int) -> list[float]:
    """The published factors: float ``np.arange(1, stop, 0.01)``, which yields 7, 12, 16, 21, 26 of them."""
    return [float(z) for z in np.arange(1, ZOOM_STOPS[intensity - 1], 0.01)]


def clipped_zoom_matrix(size: int, zoom: float) -> torch.Tensor:
    """(size, size) float64 matrix M with ``M @ row`` = the published ``clipped_zoom`` along one axis:
    crop the centre ceil(size / zoom), linearly interpolate it up as ``scipy.ndimage.zoom(order=1)``
    (output round(crop · zoom), corners aligned), then trim the centre ``size`` back out."""
    crop = int(np.ceil(size / zoom))
    top = (size - crop) // 2
    out = int(round(crop * zoom))
    position = torch.arange(out, dtype=torch.float64) * (crop - 1) / (out - 1)  # (out,) in crop pixels
    low = position.floor().long().clamp(max=crop - 1)
    frac = position - low
    interpolate = torch.zeros(out, size, dtype=torch.float64)
    interpolate[torch.arange(out), top + low] = 1 - frac
    high = (low + 1).clamp(max=crop - 1)
    interpolate[torch.arange(out), top + high] += frac
    trim = (out - size) // 2
    return interpolate[trim : trim + size]  # (size, size)


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


def _magick_motion_kernel(
    radius: float, sigma: float, angles: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ImageMagick 6's ``MotionBlurImage`` taps: weights (K,) and integer offsets (N, K) down and across.

    K = 2·ceil(radius) + 1 taps of a one-sided Gaussian exp(−i²/2σ²), normalised, at
    ``ceil(i·cos θ − 0.5)`` columns and ``ceil(i·sin θ − 0.5)`` rows from the pixel (θ per image, in
    degrees), computed in float64 as the C code does.
    """
    width = int(2 * math.ceil(radius) + 1)
    i = torch.arange(width, dtype=torch.float64, device=angles.device)  # (K,)
    kernel = torch.exp(-(i * i) / (2.0 * sigma * sigma)) / (math.sqrt(2 * math.pi) * sigma)
    radians = math.pi * angles.double() / 180.0  # (N,)
    point_x, point_y = width * torch.sin(radians), width * torch.cos(radians)
    length = torch.hypot(point_x, point_y)[:, None]
    across = torch.ceil(i * point_y[:, None] / length - 0.5).long()  # (N, K)
    down = torch.ceil(i * point_x[:, None] / length - 0.5).long()
    return kernel / kernel.sum(), down, across


def magick_motion_blur(images: torch.Tensor, radius: float, sigma: float, angles: torch.Tensor) -> torch.Tensor:
    """ImageMagick 6 Q16 ``MotionBlurImage`` of uint8 images (N, H, W, C), one angle per image, as
    the published code gets it through Wand and an 8-bit PNG: values scaled to 16 bits, taps read
    with edge pixels repeated, the sum rounded to 16 bits, then divided by 257 and truncated to 8 bits
    (bit-exact with the reference's recorded angles)."""
    n, h, w, c = images.shape
    weights, down, across = _magick_motion_kernel(radius, sigma, angles.to(images.device))
    pixels = images.reshape(n, h * w, c).double() * 257.0  # ScaleCharToQuantum
    rows = torch.arange(h, device=images.device).view(1, h, 1)
    cols = torch.arange(w, device=images.device).view(1, 1, w)
    total = torch.zeros_like(pixels)
    for k in range(len(weights)):
        source_r = (rows + down[:, k].view(n, 1, 1)).clamp(0, h - 1)  # (N, H, 1)
        source_c = (cols + across[:, k].view(n, 1, 1)).clamp(0, w - 1)  # (N, 1, W)
        index = (source_r * w + source_c).view(n, h * w, 1).expand(n, h * w, c)
        total += weights[k] * pixels.gather(1, index)
    quantum = torch.floor(total.clamp(0, 65535) + 0.5)  # ClampToQuantum: round to 16 bits
    return torch.div(quantum, 257, rounding_mode="floor").to(torch.uint8).view(n, h, w, c)  # the 8-bit PNG


def motion_blur_with_angles(images: torch.Tensor, intensity: int, angles: torch.Tensor) -> torch.Tensor:
    """``motion_blur`` with the angles (N,) in degrees given, e.g. the reference's recorded draws."""
    radius, sigma = MOTION_BLUR[intensity - 1]
    return magick_motion_blur(images, radius, sigma, angles)


def motion_blur(images: torch.Tensor, intensity: int, generator: torch.Generator) -> torch.Tensor:
    """ImageMagick's motion blur (written in torch, no ImageMagick) at a U(−45°, 45°) angle per image."""
    angles = torch.rand(len(images), generator=generator, device=generator.device, dtype=torch.float64) * 90 - 45
    return motion_blur_with_angles(images, intensity, angles)


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

    folder = Path(__file__).with_name("frost")
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


def elastic_transform(images: torch.Tensor, intensity: int, generator: torch.Generator) -> torch.Tensor:
    """A random affine warp (three control points jittered, ``cv2.warpAffine`` with reflect-101 borders)
    followed by a smooth random displacement field (uniform noise blurred by a Gaussian, scipy
    ``map_coordinates(order=1, mode='reflect')``). Sizes scale with the image height, as the published
    code's IMSIZE does; intensity 1 has no displacement, only the affine jitter."""
    n, h, w, c = images.shape
    alpha, sigma, jitter = (v * h for v in ELASTIC[intensity - 1])
    device, x = images.device, images.float() / 255.0
    gen_device = generator.device

    # cv2.getAffineTransform(source, target) on three points around the centre, then its inverse:
    # warpAffine reads destination pixel (col, row) from the source at M⁻¹ (col, row, 1).
    centre, half = torch.tensor([h // 2, w // 2], dtype=torch.float64), min(h, w) // 3
    source = torch.stack([centre + half, centre + torch.tensor([half, -half]), centre - half])  # (3, 2) as (x, y)
    moves = (torch.rand((n, 3, 2), generator=generator, device=gen_device, dtype=torch.float64) * 2 - 1) * jitter
    target = source.to(gen_device) + moves.float().double()  # the published code casts the jitter to float32
    homogeneous = torch.cat([source, torch.ones(3, 1, dtype=torch.float64)], dim=1).to(gen_device)  # (3, 3)
    forward = torch.linalg.solve(homogeneous, target).transpose(1, 2)  # (N, 2, 3): M with target = M·(p, 1)
    linear_inverse = torch.linalg.inv(forward[:, :, :2])  # (N, 2, 2)
    shift_inverse = -(linear_inverse @ forward[:, :, 2:])  # (N, 2, 1)
    grid_r, grid_c = torch.meshgrid(
        torch.arange(h, dtype=torch.float64, device=gen_device),
        torch.arange(w, dtype=torch.float64, device=gen_device),
        indexing="ij",
    )
    points = torch.stack([grid_c.reshape(-1), grid_r.reshape(-1)])  # (2, H·W) as (x, y)
    sources = linear_inverse @ points + shift_inverse  # (N, 2, H·W)
    src_c, src_r = sources[:, 0].reshape(n, h, w), sources[:, 1].reshape(n, h, w)
    x = _bilinear_sample(x, src_r.to(device, torch.float32), src_c.to(device, torch.float32), "reflect101")

    noise = torch.rand((n, h, w, 2), generator=generator, device=gen_device, dtype=torch.float64) * 2 - 1
    if alpha > 0:
        taps = gaussian_taps(sigma, truncate=3.0)
        field = _filter_separable(
            noise, correlation_matrix(h, taps, "symmetric").double(), correlation_matrix(w, taps, "symmetric").double()
        )
        field = (field * alpha).float()  # (N, H, W, 2): row and column displacement
        rows = grid_r.float().to(device) + field[..., 0].to(device)
        cols = grid_c.float().to(device) + field[..., 1].to(device)
        x = _bilinear_sample(x, rows, cols, "symmetric")
    return _to_uint8(x)


def _box3(x: torch.Tensor) -> torch.Tensor:
    """``cv2.blur(x, (3, 3))`` of float planes (N, H, W): the 3×3 mean with reflect-101 borders."""
    _, h, w = x.shape
    third = (1.0 / 3.0,) * 3
    rows, cols = correlation_matrix(h, third, "reflect101"), correlation_matrix(w, third, "reflect101")
    return rows.to(x.device, x.dtype) @ x @ cols.to(x.device, x.dtype).t()


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


# cv2.distanceTransform(DIST_L2, 5): a 5×5 chamfer in 16-bit fixed point (1, 1.4, 2.1969 per step)
_CHAMFER_SHIFT = 16
_CHAMFER_STEPS = tuple(round(v * (1 << _CHAMFER_SHIFT)) for v in (1.0, 1.4, 2.1969))


def chamfer_distance(zero: torch.Tensor) -> torch.Tensor:
    """``cv2.distanceTransform(mask, DIST_L2, 5)``: distance (float, pixels) from every pixel of bool
    planes (N, H, W) to the nearest True one, by OpenCV's two raster passes.

    Each pass walks the rows; within a row, the left-to-right (or right-to-left) chain of unit steps is
    one cumulative minimum, so the loop is over rows only, vectorised over images and columns.
    """
    n, h, w = zero.shape
    straight, diagonal, knight = _CHAMFER_STEPS
    big = float(1 << 40)
    # float64 holds these integer sums exactly
    d = torch.where(zero, 0.0, big).double()
    d = torch.nn.functional.pad(d, (2, 2, 2, 2), value=big)  # (N, H+4, W+4): outside never a source
    ramp = torch.arange(w + 4, dtype=torch.float64, device=zero.device) * straight

    def relax(row: int, above: int) -> None:
        # above = −1 for the forward pass (rows before), +1 for the backward pass (rows after)
        r = row + 2
        current = d[:, r]
        candidates = [
            d[:, r + above, 1:-3] + diagonal,
            d[:, r + above, 2:-2] + straight,
            d[:, r + above, 3:-1] + diagonal,
            d[:, r + above, :-4] + knight,
            d[:, r + above, 4:] + knight,
            d[:, r + 2 * above, 1:-3] + knight,
            d[:, r + 2 * above, 3:-1] + knight,
        ]
        best = torch.minimum(current[:, 2:-2], torch.stack(candidates).amin(dim=0))
        current[:, 2:-2] = best
        if above < 0:  # then the chain from the left: d[j] = min_k≤j (d[k] + (j − k)·straight)
            current.copy_(torch.cummin(current - ramp, dim=1).values + ramp)
        else:
            flipped = current.flip(1)
            current.copy_((torch.cummin(flipped - ramp, dim=1).values + ramp).flip(1))

    for row in range(h):
        relax(row, -1)
    for row in reversed(range(h)):
        relax(row, +1)
    return (d[:, 2:-2, 2:-2] / (1 << _CHAMFER_SHIFT)).float()


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


CORRUPTIONS: dict[str, Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]] = {
    # in the published order
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "zoom_blur": zoom_blur,
    "snow": snow,
    "frost": frost,
    "fog": fog,
    "brightness": brightness,
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
    "speckle_noise": speckle_noise,
    "gaussian_blur": gaussian_blur,
    "spatter": spatter,
    "saturate": saturate,
}


CHUNK = 256  # images per call: small enough that the float intermediates stay in the CPU's cache


def corrupt(images: torch.Tensor, name: str, intensity: int, seed: int = 0, chunk: int = CHUNK) -> torch.Tensor:
    """Apply corruption ``name`` at ``intensity`` to a uint8 batch (N, H, W, C), reproducibly.

    The batch is processed ``chunk`` images at a time, in order, from one generator seeded by
    (seed, name, intensity): the result depends on those, the images and the chunk size only (not on
    the machine's thread count or on other corruptions). CPU and CUDA generators draw different
    streams, so the same seed gives different (equally valid) random corruptions on each.

    Raises:
        ValueError: unknown corruption name, intensity outside 1–5, or images not uint8 NHWC.
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose from: {', '.join(CORRUPTIONS)}")
    if intensity not in INTENSITIES:
        raise ValueError(f"intensity must be one of {INTENSITIES}, got {intensity!r}")
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected uint8 images (N, H, W, C), got {images.dtype} {tuple(images.shape)}")
    generator = torch.Generator(device=images.device)
    # Depends on the names, not on the registry's order, so adding a corruption changes no other's draws.
    generator.manual_seed(zlib.crc32(f"{seed}/{name}/{intensity}".encode()))
    function = CORRUPTIONS[name]
    return torch.cat([function(part, intensity, generator).contiguous() for part in images.split(chunk)])


# Corruptions of each value on its own: their intensity does not depend on the image's size.
PIXELWISE = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "brightness", "contrast", "saturate")
CIFAR_SIZE = 32


def corrupt_small(images: torch.Tensor, name: str, intensity: int, seed: int = 0) -> torch.Tensor:
    """The corruptions adapted to square images smaller than CIFAR's, e.g. the 8×8 digits (gray or RGB).

    Pixel-wise ones (``PIXELWISE``) apply to the values as they are. Every other one acts in a 32×32
    frame: each pixel is repeated k×k times (k = 32 / size; k = 4 for the digits, which are 32×32
    bitmaps averaged 4×4), the CIFAR corruption runs with the CIFAR parameters, and k×k blocks are
    averaged back (rounded). So spatial sizes — blur radii, zoom factors, displacements, motion
    lengths, frost and snow textures — keep their size relative to the image, which is what a
    intensity means on CIFAR; in the small image's own pixels they are scaled by size / 32.
    Gray images (C = 1) are corrupted as RGB with equal channels and come back as the channels' mean.
    """
    n, h, w, c = images.shape
    if h != w or CIFAR_SIZE % h:
        raise ValueError(f"corrupt_small needs square images whose size divides {CIFAR_SIZE}, got {h}×{w}")
    rgb = images.expand(n, h, w, 3) if c == 1 else images
    if name in PIXELWISE:
        out = corrupt(rgb, name, intensity, seed).float()
    else:
        k = CIFAR_SIZE // h
        frame = rgb.repeat_interleave(k, dim=1).repeat_interleave(k, dim=2)  # (N, 32, 32, 3)
        out = corrupt(frame, name, intensity, seed).float().reshape(n, h, k, w, k, 3).mean(dim=(2, 4))
    if c == 1:
        out = out.mean(dim=3, keepdim=True)
    return out.round().to(torch.uint8)
