"""The digital corruptions: contrast, elastic_transform, pixelate, jpeg_compression and saturate."""

from __future__ import annotations

import io

import numpy as np
import torch

from .filters import _bilinear_sample, _filter_separable, correlation_matrix, gaussian_taps
from .parameters import CONTRAST_FACTOR, ELASTIC, JPEG_QUALITY, PIXELATE_SCALE, SATURATE, _to_uint8
from .pillow_box import _pil_box_matrix, _pil_box_upscale_index, _round_like_pillow
from .skimage_hsv import hsv_to_rgb, rgb_to_hsv


def contrast(images: torch.Tensor, intensity: int, generator: torch.Generator) -> torch.Tensor:
    """(x − m)·c + m with m each image's per-channel mean, clipped to [0, 1]. Deterministic."""
    c = CONTRAST_FACTOR[intensity - 1]
    x = images.float() / 255.0  # (N, H, W, C)
    means = x.mean(dim=(1, 2), keepdim=True)  # (N, 1, 1, C)
    return _to_uint8((x - means) * c + means)


def saturate(images: torch.Tensor, intensity: int, generator: torch.Generator) -> torch.Tensor:
    """HSV saturation · a + b, clipped. Deterministic."""
    a, b = SATURATE[intensity - 1]
    hsv = rgb_to_hsv(images.float() / 255.0)
    hsv[..., 1] = (hsv[..., 1] * a + b).clamp(0.0, 1.0)
    return _to_uint8(hsv_to_rgb(hsv))


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
    """JPEG round trip at the published quality through Pillow, as the published code does (PIL's
    ``save(..., "JPEG", quality=q)`` then ``open``), image by image. Deterministic; bit-exact with
    the reference (``shared/reference/cifar_c``).

    It always runs on the host, for CUDA images too: nvjpeg's encoder quantises differently (up to 53
    grey levels from PIL's result, measured on an H100). torchvision's batched libjpeg
    (``torchvision.io``, used before) gives the same bytes 1.6x faster per image (CIFAR-10-C's five
    sets of 10 000: 5.5 s against 8.8 s on the 2-core machine), but torchvision 0.29 deprecates its
    codecs, and importing it (torch._dynamo with it) cost every evaluation task 2.3 s, which small
    test sets never won back.
    """
    from PIL import Image

    quality = JPEG_QUALITY[intensity - 1]
    hwc = images.cpu().numpy()  # (N, H, W, C) uint8
    grey = hwc.shape[-1] == 1
    out = np.empty_like(hwc)
    for i, image in enumerate(hwc):
        encoded = io.BytesIO()
        Image.fromarray(image[..., 0] if grey else image).save(encoded, "JPEG", quality=quality)
        decoded = np.asarray(Image.open(encoded))  # (H, W) for grey, else (H, W, C)
        out[i] = decoded[..., None] if grey else decoded
    return torch.from_numpy(out).to(images.device)


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
