"""Image corruptions for dataset shift, after Hendrycks & Dietterich's CIFAR-10-C code.

Every corruption takes a batch of images ``(N, H, W, C)`` uint8 and a severity 1–5 and returns a
batch of the same shape and dtype, on the same device. Random ones draw from a ``torch.Generator``
so that a (seed, corruption, severity) triple always gives the same images. Parameters are the
published CIFAR ones; like the published pipeline (``np.uint8`` on its float output), results are
truncated to uint8, not rounded.

So far: the eight deterministic corruptions (defocus_blur, zoom_blur, brightness, contrast, pixelate,
jpeg_compression, gaussian_blur, saturate; bit-exact or within 0.04 grey levels of the published
code on the reference images in ``shared/reference/cifar_c``) and six random ones (gaussian_noise,
shot_noise, impulse_noise, speckle_noise, glass_blur, fog; within 4% of the reference's mean change
per severity). Still to come: motion_blur, snow, frost, elastic_transform, spatter.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable

import numpy as np
import torch

SEVERITIES = (1, 2, 3, 4, 5)

# Published CIFAR parameters (make_cifar_c.py), one per severity 1..5.
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


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats → uint8 by clipping, scaling and truncating, as ``np.uint8(clip(x)·255)``."""
    return (x.clamp(0.0, 1.0) * 255.0).to(torch.uint8)


def gaussian_noise(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """x + N(0, c²) per pixel and channel, clipped to [0, 1]."""
    c = GAUSSIAN_NOISE_STD[severity - 1]
    x = images.float() / 255.0  # (N, H, W, C)
    noise = torch.randn(x.shape, generator=generator, device=generator.device) * c
    return _to_uint8(x + noise)


def shot_noise(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """poisson(x · c) / c, clipped."""
    c = SHOT_NOISE_RATE[severity - 1]
    x = images.float() / 255.0
    return _to_uint8(torch.poisson(x * c, generator=generator) / c)


def impulse_noise(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Salt and pepper: each value is replaced with probability c, half by 1 and half by 0
    (``skimage.util.random_noise(mode='s&p')``, per channel)."""
    amount = IMPULSE_AMOUNT[severity - 1]
    x = images.float() / 255.0
    draw = torch.rand(x.shape, generator=generator, device=generator.device, dtype=torch.float32)
    salt = torch.rand(x.shape, generator=generator, device=generator.device) < 0.5
    noisy = torch.where(salt, torch.ones_like(x), torch.zeros_like(x))
    return _to_uint8(torch.where(draw < amount, noisy, x))


def speckle_noise(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """x + x · N(0, c²), clipped."""
    x = images.float() / 255.0
    noise = torch.randn(x.shape, generator=generator, device=generator.device)
    return _to_uint8(x + x * noise * SPECKLE_STD[severity - 1])


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


def fog(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Add a plasma-fractal haze per image, rescaled by the image's maximum."""
    strength, decay = FOG[severity - 1]
    n, h, w, _ = images.shape
    mapsize = 1 << (max(h, w) - 1).bit_length()  # the smallest power of two ≥ the image (32 for CIFAR)
    x = images.double() / 255.0
    peak = x.amax(dim=(1, 2, 3), keepdim=True)  # (N, 1, 1, 1)
    haze = plasma_fractal(n, mapsize, decay, generator)[:, :h, :w, None].to(x.device)  # (N, H, W, 1)
    return _to_uint8((x + strength * haze) * peak / (peak + strength))


def contrast(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """(x − m)·c + m with m each image's per-channel mean, clipped to [0, 1]. Deterministic."""
    c = CONTRAST_FACTOR[severity - 1]
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


def brightness(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """HSV value + c, clipped. Deterministic."""
    hsv = rgb_to_hsv(images.float() / 255.0)
    hsv[..., 2] = (hsv[..., 2] + BRIGHTNESS_SHIFT[severity - 1]).clamp(0.0, 1.0)
    return _to_uint8(hsv_to_rgb(hsv))


def saturate(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """HSV saturation · a + b, clipped. Deterministic."""
    a, b = SATURATE[severity - 1]
    hsv = rgb_to_hsv(images.float() / 255.0)
    hsv[..., 1] = (hsv[..., 1] * a + b).clamp(0.0, 1.0)
    return _to_uint8(hsv_to_rgb(hsv))


def gaussian_blur(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Per-channel Gaussian blur as ``skimage.filters.gaussian`` (truncate 4σ, edge mode 'nearest')."""
    return _to_uint8(_skimage_gaussian(images.float() / 255.0, GAUSSIAN_BLUR_SIGMA[severity - 1]))


def _filter_channels(x: torch.Tensor, kernels: list[torch.Tensor], pad: int, pad_mode: str) -> torch.Tensor:
    """Correlate every channel of floats (N, H, W, C) with each 2-D kernel in turn, after padding
    ``pad`` pixels per side with ``pad_mode``; the output keeps (N, H, W, C)."""
    n, h, w, c = x.shape
    planes = x.permute(0, 3, 1, 2).reshape(n * c, 1, h, w)  # (N·C, 1, H, W)
    planes = torch.nn.functional.pad(planes, (pad, pad, pad, pad), mode=pad_mode)
    for kernel in kernels:
        planes = torch.nn.functional.conv2d(planes, kernel[None, None].to(planes.dtype))
    return planes.reshape(n, c, h, w).permute(0, 2, 3, 1)


def _skimage_gaussian(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``skimage.filters.gaussian(x, sigma, channel_axis=-1)`` on floats (N, H, W, C)."""
    radius = int(4.0 * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64, device=x.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()  # (2r + 1,)
    # separable: along H, then along W; skimage's 'nearest' edges are torch's 'replicate'
    return _filter_channels(x, [kernel.view(-1, 1), kernel.view(1, -1)], radius, "replicate")


def glass_blur(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Blur, locally shuffle pixels, blur again, with the published code's quirks.

    Its offsets come from ``randint(-1, 1)`` (so dy, dx ∈ {−1, 0}), its row/column loop runs from
    size − 1 down to 2, and its tuple "swap" on numpy views is a copy: each visited pixel takes its
    neighbour's value. Visited in that order, every pixel reads a not-yet-visited neighbour, so one
    iteration is one parallel gather here.
    """
    sigma, delta, iterations = GLASS[severity - 1]
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
    grid = torch.arange(-8, 9, dtype=torch.float32)
    y, x = torch.meshgrid(grid, grid, indexing="ij")
    disk = ((x**2 + y**2) <= radius**2).float()
    disk = disk / disk.sum()  # (17, 17)
    taps = torch.exp(-(torch.tensor([-1.0, 0.0, 1.0]) ** 2) / (2 * alias_blur**2))
    taps = taps / taps.sum()
    blur = (taps[:, None] * taps[None, :]).view(1, 1, 3, 3)
    return torch.nn.functional.conv2d(disk.view(1, 1, 17, 17), blur, padding=1)[0, 0]  # (17, 17)


def defocus_blur(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Per-channel correlation with the blurred disk, borders reflected (``cv2.filter2D``). Deterministic."""
    kernel = disk_kernel(*DEFOCUS[severity - 1]).to(images.device)  # (17, 17)
    # torch's 'reflect' leaves the edge pixel out, as cv2's default BORDER_REFLECT_101 does
    return _to_uint8(_filter_channels(images.float() / 255.0, [kernel], 8, "reflect"))


_PIL_PRECISION_BITS = 22  # Pillow's fixed-point precision for 8-bit resampling (32 − 8 − 2)


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


def _pil_resize_box(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, H, W, C) → (N, size, size, C) as Pillow's BOX resize: horizontal pass, then vertical,
    each rounded to 8 bits."""
    # Integer sums below 2^53 are exact in float64, which multiplies through BLAS; the shift is then
    # a floor division by 2^22.
    half, unit = float(1 << (_PIL_PRECISION_BITS - 1)), float(1 << _PIL_PRECISION_BITS)
    x = images.permute(0, 3, 1, 2).double()  # (N, C, H, W)
    across = pil_box_weights(x.shape[3], size).double().to(x.device)  # (size, W)
    x = torch.floor((x @ across.t() + half) / unit).clamp(0, 255)  # (N, C, H, size)
    down = pil_box_weights(x.shape[2], size).double().to(x.device)  # (size, H)
    x = torch.floor((down @ x + half) / unit).clamp(0, 255)  # (N, C, size, size)
    return x.permute(0, 2, 3, 1).to(torch.uint8)


def pixelate(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """BOX-downsample to int(size · c) and back, bit-exact with the published PIL pipeline."""
    size = images.shape[1]
    small = _pil_resize_box(images, int(size * PIXELATE_SCALE[severity - 1]))
    return _pil_resize_box(small, size)


def jpeg_compression(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """JPEG round trip at the published quality, with torchvision's libjpeg (batched; on CUDA when
    the images are there). Deterministic; bit-exact with the published PIL round trip here.

    torchvision 0.29 deprecates its image codecs in favour of TorchCodec; the project pins 0.29.1.
    """
    from torchvision.io import decode_jpeg, encode_jpeg

    chw = list(images.permute(0, 3, 1, 2).contiguous())  # N × (C, H, W)
    decoded = decode_jpeg(encode_jpeg(chw, quality=JPEG_QUALITY[severity - 1]), device=images.device)
    return torch.stack(decoded).permute(0, 2, 3, 1).contiguous()


def zoom_factors(severity: int) -> list[float]:
    """The published factors: float ``np.arange(1, stop, 0.01)``, which yields 7, 12, 16, 21, 26 of them."""
    return [float(z) for z in np.arange(1, ZOOM_STOPS[severity - 1], 0.01)]


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
def zoom_operator(height: int, width: int, severity: int) -> torch.Tensor:
    """(H·W, H·W) float32 K with vec(zoom_blur(x)) = K vec(x) for one channel: every zoom is linear,
    rows ⊗ columns, so their mean with the identity is one matrix and the blur one matmul."""
    factors = zoom_factors(severity)
    total = torch.eye(height * width, dtype=torch.float64)
    for zoom in factors:
        total += torch.kron(clipped_zoom_matrix(height, zoom), clipped_zoom_matrix(width, zoom))
    return (total / (len(factors) + 1)).float()


def zoom_blur(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Mean of the image and its centre zooms at the published factors. Deterministic."""
    n, h, w, c = images.shape
    operator = zoom_operator(h, w, severity).to(images.device)  # (H·W, H·W)
    planes = images.permute(0, 3, 1, 2).reshape(n * c, h * w).float() / 255.0  # (N·C, H·W)
    blurred = planes @ operator.t()
    return _to_uint8(blurred.reshape(n, c, h, w).permute(0, 2, 3, 1))


CORRUPTIONS: dict[str, Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]] = {
    # in the published order
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur,
    "glass_blur": glass_blur,
    "zoom_blur": zoom_blur,
    "fog": fog,
    "brightness": brightness,
    "contrast": contrast,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
    "speckle_noise": speckle_noise,
    "gaussian_blur": gaussian_blur,
    "saturate": saturate,
}


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """Apply corruption ``name`` at ``severity`` to a uint8 batch (N, H, W, C), reproducibly.

    Raises:
        ValueError: unknown corruption name, severity outside 1–5, or images not uint8 NHWC.
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose from: {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected uint8 images (N, H, W, C), got {images.dtype} {tuple(images.shape)}")
    generator = torch.Generator(device=images.device)
    # Depends on the names, not on the registry's order, so adding a corruption changes no other's draws.
    generator.manual_seed(zlib.crc32(f"{seed}/{name}/{severity}".encode()))
    return CORRUPTIONS[name](images, severity, generator)
