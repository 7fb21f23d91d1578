"""``ovatune corrupt``: CIFAR-C files in the published layout, from a CIFAR test set in its real format."""

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from trainables.data.cifar import read_cifar, write_cifar
from trainables.data.corrupted_sets import CORRUPTED_SETS
from trainables.data.corruptions import CORRUPTIONS, corrupt
from tuning.cli import main

from launch import start_ovatune


def _photo_tiles(n: int) -> np.ndarray:
    """n real-looking 32×32 RGB images: tiles of scikit-learn's sample photographs."""
    from sklearn.datasets import load_sample_images

    tiles = [photo[r : r + 32, c : c + 32] for photo in load_sample_images().images
             for r in range(0, 400, 32) for c in range(0, 608, 32)]  # fmt: skip
    return np.stack(tiles[:n])


@pytest.fixture
def cifar100_dir(tmp_path) -> tuple[Path, np.ndarray, np.ndarray]:
    images = _photo_tiles(96)
    labels = np.arange(96) % 100
    write_cifar("cifar100", tmp_path, images, labels, train=False)
    return tmp_path, images, labels


def test_the_sets_are_the_papers():
    assert (CORRUPTED_SETS["cifar10"].folder, CORRUPTED_SETS["cifar10"].corruptions) == (
        "CIFAR-10-C",
        tuple(CORRUPTIONS),
    )
    folder, names = CORRUPTED_SETS["cifar100"].folder, CORRUPTED_SETS["cifar100"].corruptions
    assert folder == "CIFAR-100-C" and len(names) == 17
    assert set(CORRUPTIONS) - set(names) == {"motion_blur", "snow"}


def test_reader_round_trips_the_pickle_format(cifar100_dir):
    data_dir, images, labels = cifar100_dir
    read_images, read_labels = read_cifar("cifar100", data_dir, train=False)
    assert read_images.shape == (96, 32, 32, 3) and read_images.dtype == np.uint8
    np.testing.assert_array_equal(read_images, images)
    np.testing.assert_array_equal(read_labels, labels)


def test_corrupt_writes_the_published_layout(cifar100_dir, capsys):
    data_dir, images, labels = cifar100_dir
    assert main(["corrupt", "cifar100", "--data-dir", str(data_dir), "--corruptions", "gaussian_noise,frost"]) == 0
    out = data_dir / "CIFAR-100-C"
    assert sorted(p.name for p in out.iterdir()) == ["frost.npy", "gaussian_noise.npy", "labels.npy"]
    np.testing.assert_array_equal(np.load(out / "labels.npy"), np.tile(labels, 5).astype(np.uint8))
    for name in ("gaussian_noise", "frost"):
        written = np.load(out / f"{name}.npy")
        assert written.shape == (5 * 96, 32, 32, 3) and written.dtype == np.uint8
        for intensity in range(1, 6):  # intensity s is rows (s − 1)·N … s·N, seeded by (0, name, s)
            expected = corrupt(torch.from_numpy(images), name, intensity, seed=0).numpy()
            np.testing.assert_array_equal(written[(intensity - 1) * 96 : intensity * 96], expected)
    assert "done in" in capsys.readouterr().out


def test_a_killed_run_resumes_at_the_first_unfinished_file(tmp_path):
    images = np.tile(_photo_tiles(250), (12, 1, 1, 1))  # 3000 images: the slow files take seconds
    write_cifar("cifar100", tmp_path, images, np.arange(3000) % 100, train=False)
    out = tmp_path / "CIFAR-100-C"
    process = start_ovatune("corrupt", "cifar100", "--data-dir", str(tmp_path), "--corruptions",
                            "contrast,spatter,elastic_transform", "--workers", "1",
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 120
    while not (out / "contrast.npy").exists() and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert (out / "contrast.npy").exists(), "the first file was never finished"
    assert not (out / "elastic_transform.npy").exists(), "the run finished before it could be killed"
    finished_before = (out / "contrast.npy").stat().st_mtime_ns

    assert main(["corrupt", "cifar100", "--data-dir", str(tmp_path), "--corruptions",
                 "contrast,spatter,elastic_transform"]) == 0  # fmt: skip
    assert (out / "contrast.npy").stat().st_mtime_ns == finished_before  # kept, not redone
    assert not list(out.glob("*.partial")) and not list(out.glob(".clean*"))
    for name in ("spatter", "elastic_transform"):
        written = np.load(out / f"{name}.npy", mmap_mode="r")
        expected = corrupt(torch.from_numpy(images), name, 5, seed=0).numpy()
        np.testing.assert_array_equal(written[4 * 3000 :], expected)


def test_missing_data_says_where_it_looked(tmp_path, capsys):
    assert main(["corrupt", "cifar10", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "cifar-10-batches-py" / "test_batch") in err and "download=True" in err


def test_unknown_corruption_lists_the_valid_ones(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["corrupt", "cifar10", "--data-dir", str(tmp_path), "--corruptions", "rain"])
    assert exit_info.value.code == 2
    assert "choose from: gaussian_noise, shot_noise" in capsys.readouterr().err
