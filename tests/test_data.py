"""The embedded datasets and the digits shifts."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from trainables.data import (
    DATASETS,
    DatasetNotAvailable,
    Split,
    check_available,
    import_loader,
    load_dataset,
    stratified_split,
)
from trainables.data.corruptions import CONTRAST_FACTOR, GAUSSIAN_NOISE_STD, corrupt
from trainables.data.toy2d import class_centres


def test_toy2d_is_the_papers_appendix_e1():
    data = load_dataset("toy2d", seed=0)
    x, y = data.train.x.numpy(), data.train.y.numpy()
    assert x.shape == (10_000, 2) and np.bincount(y).tolist() == [1000] * 10
    centres = class_centres()
    assert np.allclose(centres[0], [20, 0]) and np.allclose(
        centres[3], [20 * np.cos(0.6 * np.pi), 20 * np.sin(0.6 * np.pi)]
    )
    for j in range(10):
        points = x[y == j]
        assert np.allclose(points.mean(axis=0), centres[j], atol=0.15)  # 3 standard errors of the mean
        assert np.allclose(np.cov(points.T), 2 * np.eye(2), atol=0.3)  # covariance 2I
    for name, radius in (("ring_r60", 60.0), ("ring_r200", 200.0)):
        assert np.allclose(np.linalg.norm(data.ood[name].numpy(), axis=1), radius, rtol=1e-5)


def test_toy2d_is_seeded():
    a, b, c = load_dataset("toy2d", seed=1), load_dataset("toy2d", seed=1), load_dataset("toy2d", seed=2)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.x, b.test.x)
    assert not torch.equal(a.train.x, c.train.x)
    assert not torch.equal(a.train.x[:100], a.val.x[:100])  # independent streams per split


def test_digits_splits_are_stratified_disjoint_and_seeded():
    data = load_dataset("digits", seed=0)
    sizes = len(data.train), len(data.val), len(data.test)
    assert sum(sizes) == 1797 and sizes[2] == 360 and sizes[1] == 144
    assert data.input_shape == (1, 8, 8) and data.num_classes == 10
    for split in (data.train, data.val, data.test):
        counts = np.bincount(split.y.numpy(), minlength=10) / len(split)
        assert np.all(np.abs(counts - 0.1) < 0.02)  # stratified
    again = load_dataset("digits", seed=0)
    assert torch.equal(again.test.x, data.test.x) and torch.equal(again.train.y, data.train.y)
    assert not torch.equal(load_dataset("digits", seed=1).test.y, data.test.y)
    assert 0.0 <= data.train.x.min() and data.train.x.max() <= 1.0


def test_stratified_split_partitions_the_indices():
    y = np.repeat(np.arange(4), 25)
    keep, held_out = stratified_split(y, 0.2, seed=3)
    assert len(np.intersect1d(keep, held_out)) == 0 and len(keep) + len(held_out) == 100
    assert np.bincount(y[held_out]).tolist() == [5, 5, 5, 5]
    assert np.array_equal(held_out, stratified_split(y, 0.2, seed=3)[1])


def test_digits_ood_patches_come_from_the_photos():
    patches = load_dataset("digits").ood["photo_patches"]
    assert patches.shape == (1000, 1, 8, 8) and 0.0 <= patches.min() and patches.max() <= 1.0
    assert patches.std() > 0.1  # real image content, not a constant


def test_unknown_dataset_names_the_available_ones():
    with pytest.raises(DatasetNotAvailable, match="toy2d, digits, cifar10, cifar100, imagenet, clinc"):
        load_dataset("mnist")


def test_a_datasets_loader_module_is_imported_ahead_of_its_first_load():
    # The driver does it while Ray starts (tuning.sweep). Digits' loader no longer brings scikit-learn
    # (1.1 s): its arrays and splits are read through it once, then from the cache folder (test_cache).
    code = ("import sys; from trainables.data import import_loader; import_loader('digits'); "
            "print('trainables.data.digits' in sys.modules, 'sklearn' in sys.modules)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["True", "False"], done.stderr[-2000:]
    for name in DATASETS:  # every row's loader names its module
        import_loader(name)
    with pytest.raises(DatasetNotAvailable, match="datasets available"):
        import_loader("mnist")


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_dataset_is_embedded_or_says_where_it_looked(name, tmp_path, monkeypatch):
    monkeypatch.delenv("OVATUNE_DATA_DIR", raising=False)
    source = DATASETS[name]
    if source.embedded:
        check_available(name, None)  # nothing to find, nothing to fetch
        assert source.download is None
        return
    with pytest.raises(DatasetNotAvailable, match="--data-dir"):  # no folder given at all
        check_available(name, None)
    with pytest.raises(DatasetNotAvailable, match=f"not found: looked for {tmp_path}/"):
        check_available(name, str(tmp_path))
    assert callable(source.download)


def test_contrast_by_hand_and_truncation():
    images = torch.tensor([[[[0], [100]], [[200], [255]]]], dtype=torch.uint8)  # (1, 2, 2, 1)
    x = images.float() / 255
    mean = x.mean()
    for intensity in (1, 5):
        c = CONTRAST_FACTOR[intensity - 1]
        expected = np.floor(((x - mean) * c + mean).clamp(0, 1).numpy() * 255)  # truncation, not rounding
        assert np.array_equal(corrupt(images, "contrast", intensity).numpy(), expected.astype(np.uint8))


def test_gaussian_noise_is_seeded_and_grows_with_intensity():
    images = torch.full((200, 8, 8, 1), 128, dtype=torch.uint8)
    a = corrupt(images, "gaussian_noise", 3, seed=7)
    assert torch.equal(a, corrupt(images, "gaussian_noise", 3, seed=7))
    assert not torch.equal(a, corrupt(images, "gaussian_noise", 3, seed=8))
    stds = [corrupt(images, "gaussian_noise", s).float().std().item() for s in range(1, 6)]
    assert all(b > a for a, b in zip(stds, stds[1:]))
    for intensity, std in zip(range(1, 6), stds):
        assert std == pytest.approx(GAUSSIAN_NOISE_STD[intensity - 1] * 255, rel=0.05)


def test_corrupt_rejects_bad_input():
    images = torch.zeros((1, 8, 8, 1), dtype=torch.uint8)
    with pytest.raises(ValueError, match="choose from: gaussian_noise, shot_noise, impulse_noise"):
        corrupt(images, "rain", 1)
    with pytest.raises(ValueError, match="intensity"):
        corrupt(images, "contrast", 6)
    with pytest.raises(ValueError, match="uint8"):
        corrupt(images.float(), "contrast", 1)


def test_digits_shift_degrades_gracefully():
    data = load_dataset("digits")
    clean = data.test.x
    diffs = [(data.shifted("gaussian_noise", s) - clean).abs().mean().item() for s in range(1, 6)]
    assert all(b > a for a, b in zip(diffs, diffs[1:]))


def test_digits_shifted_sets_are_corrupt_smalls_made_once_per_seed(tmp_path, monkeypatch):
    """The shifted sets come from the cache folder after the first time: the same tensors as
    corrupting the test images there and then, and one file per seed."""
    import trainables.data.digits as digits
    from trainables.data.corruptions import corrupt_small

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    data = load_dataset("digits", seed=3)
    images = (data.test.x * 255).round().to(torch.uint8).permute(0, 2, 3, 1)  # (N, 8, 8, 1), as corrupted
    for name, intensity in (("gaussian_noise", 1), ("motion_blur", 3), ("jpeg_compression", 5), ("frost", 2)):
        assert torch.equal(
            data.shifted(name, intensity), digits.to_model_input(corrupt_small(images, name, intensity, 3))
        )
    made = list((tmp_path / "ovatune" / "digits-shifted").iterdir())
    assert len(made) == 1

    def not_again(*args, **kwargs):
        raise AssertionError("corrupted again instead of read from the cache")

    monkeypatch.setattr(digits, "corrupt_small", not_again)
    again = load_dataset("digits", seed=3)
    assert torch.equal(again.shifted("motion_blur", 3), data.shifted("motion_blur", 3))
    with pytest.raises(AssertionError, match="corrupted again"):  # another seed: its own sets
        load_dataset("digits", seed=4).shifted("motion_blur", 3)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="unknown corruption"):
        data.shifted("no_such_corruption", 1)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(digits.importlib.metadata, "version", lambda name: "0.0-another")
    load_dataset("digits", seed=3).shifted("gaussian_noise", 1)  # another torch, numpy or Pillow: made again
    assert len(list((tmp_path / "ovatune" / "digits-shifted").iterdir())) == 2


def test_a_subset_of_a_split_keeps_its_labels_and_cuts_files_without_decoding_them():
    from trainables.data.imagenet import ImageFiles

    tensors = Split(torch.arange(12).reshape(6, 2), torch.arange(6) % 3)
    cut = tensors.subset(torch.tensor([1, 4]))
    assert cut.x.tolist() == [[2, 3], [8, 9]] and cut.y.tolist() == [1, 1]
    files = ImageFiles([(f"missing/{i}.JPEG", i % 3) for i in range(6)], transform=lambda image: image)
    cut = Split(files, files.labels).subset(torch.tensor([1, 4]))
    assert cut.x.samples == [("missing/1.JPEG", 1), ("missing/4.JPEG", 1)] and cut.y.tolist() == [1, 1]
    assert cut.x.transform is files.transform
