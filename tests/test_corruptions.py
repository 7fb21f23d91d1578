"""The corruption registry and its building blocks, checked by hand (no reference data needed)."""

import math

import numpy as np
import pytest
import torch

from trainables.data import load_dataset
from trainables.data.corruptions import (
    CHUNK,
    CONTRAST_FACTOR,
    CORRUPTIONS,
    PIXELWISE,
    _border_indices,
    _magick_motion_kernel,
    canny,
    chamfer_distance,
    correlation_matrix,
    corrupt,
    corrupt_small,
    equalize_hist,
    magick_motion_blur,
)
from trainables.data.toy2d import SPAN, shift_points


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    from sklearn.datasets import load_sample_images

    tiles = [
        p[r : r + 32, c : c + 32] for p in load_sample_images().images for r in (0, 96, 192) for c in (0, 200, 400)
    ]
    return torch.from_numpy(np.stack(tiles))  # (18, 32, 32, 3) uint8


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_every_corruption_keeps_the_format_and_is_reproducible(photos, name):
    for intensity in (1, 3, 5):
        out = corrupt(photos, name, intensity, seed=3)
        assert out.shape == photos.shape and out.dtype == torch.uint8 and out.is_contiguous()
        assert torch.equal(out, corrupt(photos, name, intensity, seed=3))
        assert not torch.equal(out, photos) or (name, intensity) == ("saturate", 1), "it changed nothing"


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_chunking_splits_work_without_mixing_images(photos, name):
    # a batch over CHUNK goes through in parts; deterministic corruptions give the same result per image
    batch = photos.repeat(CHUNK // len(photos) + 2, 1, 1, 1)
    out = corrupt(batch, name, 2)
    assert out.shape == batch.shape
    if name in ("defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate", "gaussian_blur", "saturate"):
        assert torch.equal(out[-len(photos) :], corrupt(photos, name, 2))


@pytest.mark.parametrize(
    "border, expected",
    [
        ("replicate", [0, 0, 0, 0, 1, 2, 3, 3]),
        ("reflect101", [3, 2, 1, 0, 1, 2, 3, 2]),
        ("symmetric", [2, 1, 0, 0, 1, 2, 3, 3]),
    ],
)
def test_border_rules(border, expected):
    assert _border_indices(torch.arange(-3, 5), 4, border).tolist() == expected


def test_correlation_matrix_folds_the_border_in():
    m = correlation_matrix(4, (0.25, 0.5, 0.25), "replicate")
    assert m[0].tolist() == [0.75, 0.25, 0.0, 0.0]  # reads index −1 as index 0
    assert m[2].tolist() == [0.0, 0.25, 0.5, 0.25]
    assert torch.allclose(m.sum(dim=1), torch.ones(4))


def test_motion_kernel_by_hand():
    weights, down, across = _magick_motion_kernel(6, 1.0, torch.tensor([0.0, 90.0]))
    expected = torch.tensor([math.exp(-(i * i) / 2) for i in range(13)], dtype=torch.float64)
    assert torch.allclose(weights, expected / expected.sum())  # 2·ceil(6) + 1 one-sided taps
    assert across[0].tolist() == list(range(13)) and down[0].tolist() == [0] * 13  # 0°: along the row
    assert down[1].tolist() == list(range(13)) and across[1].tolist() == [0] * 13  # 90°: down the column


def test_motion_blur_of_an_edge_by_hand():
    image = torch.zeros(1, 1, 8, 1, dtype=torch.uint8)
    image[0, 0, 4:] = 200  # a step at column 4
    out = magick_motion_blur(image, 1, 1.0, torch.tensor([0.0]))  # taps at columns x, x+1, x+2
    w = torch.tensor([1.0, math.exp(-0.5), math.exp(-2.0)], dtype=torch.float64)
    w = w / w.sum()
    # column 3 reads columns 3, 4, 5 = (0, 200, 200); 16-bit rounding then /257 truncated
    expected = math.floor(math.floor(257 * 200 * float(w[1] + w[2]) + 0.5) / 257)
    assert out[0, 0, 3, 0].item() == expected
    assert out[0, 0, 0, 0].item() == 0 and out[0, 0, 7, 0].item() == 200  # the edge pixel repeats


def test_chamfer_distance_is_opencvs_5x5_mask():
    zero = torch.zeros(1, 9, 9, dtype=torch.bool)
    zero[0, 4, 4] = True
    d = chamfer_distance(zero)[0]
    a, b, c = (round(v * 65536) / 65536 for v in (1.0, 1.4, 2.1969))
    assert d[4, 5].item() == pytest.approx(a) and d[5, 5].item() == pytest.approx(b)
    assert d[5, 6].item() == pytest.approx(c) and d[6, 4].item() == pytest.approx(2 * a)
    assert d[7, 7].item() == pytest.approx(3 * b) and d[4, 4].item() == 0


def test_chamfer_distance_matches_brute_force():
    generator = torch.Generator().manual_seed(0)
    zero = torch.rand(3, 16, 16, generator=generator) < 0.02
    zero[:, 0, 0] = True
    a, b, c = (round(v * 65536) / 65536 for v in (1.0, 1.4, 2.1969))

    def metric(dr: int, dc: int) -> float:
        m, n = max(abs(dr), abs(dc)), min(abs(dr), abs(dc))
        return n * c + (m - 2 * n) * a if m >= 2 * n else (m - n) * c + (2 * n - m) * b

    d = chamfer_distance(zero)
    for k in range(3):
        sources = zero[k].nonzero().tolist()
        for r in range(16):
            for q in range(16):
                expected = min(metric(r - sr, q - sq) for sr, sq in sources)
                assert d[k, r, q].item() == pytest.approx(expected, abs=1e-4)


def test_equalize_hist_by_hand():
    image = torch.tensor([[[0, 0], [1, 2]]], dtype=torch.uint8)  # first value 0 (count 2), scale 255 / 2
    assert equalize_hist(image).tolist() == [[[0, 0], [128, 255]]]  # round(127.5) = 128, round(255) = 255
    flat = torch.full((1, 2, 2), 7, dtype=torch.uint8)
    assert torch.equal(equalize_hist(flat), flat)  # one value only: unchanged


def test_canny_finds_the_outline_of_a_square():
    image = torch.zeros(1, 32, 32, dtype=torch.uint8)
    image[0, 10:22, 10:22] = 200
    edges = canny(image, 50, 150)[0]
    rows, cols = edges.nonzero(as_tuple=True)
    assert len(rows) > 40  # the whole outline, not a few points
    on_outline = (
        ((rows - 9.5).abs() <= 1) | ((rows - 21.5).abs() <= 1) | ((cols - 9.5).abs() <= 1) | ((cols - 21.5).abs() <= 1)
    )
    assert bool(on_outline.all())
    assert not canny(torch.full((1, 8, 8), 90, dtype=torch.uint8), 50, 150).any()  # flat: no edges


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_digits_sized_corruptions(name):
    digits = torch.from_numpy((np.arange(5 * 64) % 256).astype(np.uint8).reshape(5, 8, 8, 1))
    out = corrupt_small(digits, name, 3)
    assert out.shape == digits.shape and out.dtype == torch.uint8
    if name in PIXELWISE:  # applied to the values as they are
        assert torch.equal(
            out, corrupt(digits.expand(5, 8, 8, 3), name, 3).float().mean(3, keepdim=True).round().byte()
        )
    flat = torch.full((2, 8, 8, 1), 100, dtype=torch.uint8)
    if name in ("defocus_blur", "gaussian_blur", "zoom_blur", "pixelate", "glass_blur"):
        # blurring a flat image changes nothing, up to the published truncation of 99.99… to 99
        assert (corrupt_small(flat, name, 5).int() - flat.int()).abs().max() <= 1


def test_the_digits_are_shifted_by_all_nineteen():
    data = load_dataset("digits")
    assert data.shift_corruptions == tuple(CORRUPTIONS)
    shifted = data.shifted("motion_blur", 5)
    assert shifted.shape == data.test.x.shape and not torch.equal(shifted, data.test.x)


def test_toy_shifts_by_hand():
    x = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 20.0]], dtype=np.float32)
    mean = x.mean(axis=0)
    for intensity in (1, 5):
        c = CONTRAST_FACTOR[intensity - 1]
        np.testing.assert_allclose(shift_points(x, "contrast", intensity, 0), (x - mean) * c + mean, rtol=1e-6)
    many = np.zeros((20000, 2), dtype=np.float32)
    noisy = shift_points(many, "gaussian_noise", 5, 0)
    assert noisy.std() == pytest.approx(0.10 * SPAN, rel=0.02)
    np.testing.assert_array_equal(noisy, shift_points(many, "gaussian_noise", 5, 0))
    with pytest.raises(ValueError, match="choose from: gaussian_noise, contrast"):
        shift_points(x, "fog", 1, 0)
