"""CIFAR data, augmentation and the paper's image networks, on small files in the real formats."""

import numpy as np
import pytest
import torch

from trainables.data import DatasetNotAvailable, load_dataset
from trainables.data.augment import pad_crop_flip
from trainables.data.cifar import write_cifar
from trainables.losses import LOSSES
from trainables.models import build_classifier


def write_fake_cifar(root, train_per_class: int = 20, test: int = 60, seed: int = 0) -> None:
    """CIFAR-10 (train + test, with its meta file), CIFAR-100 test and SVHN test in their real formats."""
    import pickle

    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), train_per_class)
    # class-dependent colour so that a tiny network can learn something
    images = (rng.integers(0, 60, (len(labels), 32, 32, 3)) + labels[:, None, None, None] * 19).astype(np.uint8)
    write_cifar("cifar10", root, images, labels, train=True)
    test_labels = np.arange(test) % 10
    test_images = (rng.integers(0, 60, (test, 32, 32, 3)) + test_labels[:, None, None, None] * 19).astype(np.uint8)
    write_cifar("cifar10", root, test_images, test_labels, train=False)
    with open(root / "cifar-10-batches-py" / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"thing{i}" for i in range(10)]}, f)
    write_cifar(
        "cifar100", root, rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8), np.arange(40) % 100, train=False
    )
    (root / "svhn").mkdir(exist_ok=True)
    savemat(root / "svhn" / "test_32x32.mat",
            {"X": rng.integers(0, 256, (32, 32, 3, 30), dtype=np.uint8), "y": (np.arange(30) % 10 + 1)[:, None]})  # fmt: skip


def test_crop_stays_inside_the_padded_image_and_flip_is_a_flip():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.int64).reshape(2, 3, 8, 8) + 1  # every pixel distinct, none 0
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    for seed in range(20):
        out = pad_crop_flip(images, torch.Generator().manual_seed(seed))
        assert out.shape == images.shape
        for b in range(2):
            # the output is the padded image's window at some offset, as it is or mirrored left-right
            windows = [padded[b, :, r : r + 8, q : q + 8] for r in range(9) for q in range(9)]
            assert any(torch.equal(out[b], w) or torch.equal(out[b], w.flip(-1)) for w in windows)
    flips = [pad_crop_flip(images, torch.Generator().manual_seed(s)) for s in range(40)]
    centre = [torch.equal(f[0, :, 4:4, :], images[0, :, 4:4, :]) for f in flips]
    assert all(centre)


def test_flip_and_crop_happen_and_are_seeded():
    ramp = torch.arange(1, 33, dtype=torch.uint8).expand(1000, 3, 32, 32)  # columns 1 … 32 left to right
    a = pad_crop_flip(ramp, torch.Generator().manual_seed(1))
    assert a.dtype == torch.uint8
    assert torch.equal(a, pad_crop_flip(ramp, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, pad_crop_flip(ramp, torch.Generator().manual_seed(2)))
    middle = a[:, 0, 16, 8:24].int()  # never padding: within 4 pixels of any crop's centre
    flipped = (middle.diff(dim=1) < 0).all(dim=1).float().mean().item()
    assert 0.45 < flipped < 0.55  # half are mirrored
    shift = (middle[:, 8] - 16.5).abs()  # how far the crop moved the centre, left or right
    assert 0.1 < (shift <= 1).float().mean().item() < 0.5  # offsets spread over −4 … 4


@pytest.mark.parametrize(
    "model, shape, classes, low, high",
    [
        ("resnet20", (3, 32, 32), 10, 0.26e6, 0.28e6),  # ≈ 0.27 M
        ("wide_resnet28_10", (3, 32, 32), 100, 36.4e6, 36.6e6),  # ≈ 36.5 M
        ("resnet50", (3, 224, 224), 1000, 25.5e6, 25.6e6),  # ≈ 25.6 M
    ],
)
def test_full_size_networks(model, shape, classes, low, high):
    classifier = build_classifier(shape, classes, {"model": model, "loss": "softmax"})
    count = sum(p.numel() for p in classifier.parameters())
    assert low <= count <= high, count
    if model == "resnet20":
        logits = classifier(torch.randint(0, 256, (2, *shape), dtype=torch.uint8))
        assert logits.shape == (2, classes)


@pytest.mark.parametrize("model", ["resnet20", "wide_resnet28_10", "resnet50"])
@pytest.mark.parametrize("loss", ["softmax", "ova_dm"])
def test_tiny_networks_of_the_same_code(model, loss):
    config = {"model": model, "loss": loss, "width": 4, "depth": 8 if model == "resnet20" else 10, "widen": 1}
    classifier = build_classifier((3, 32, 32), 7, config)
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    assert classifier(x).shape == (3, 7) and classifier.embed(x).shape == (3, classifier.body.embedding_dim)
    probabilities = classifier.probabilities(x.float())  # served models get floats 0–255: same result
    assert torch.allclose(probabilities, classifier.probabilities(x))


def test_cifar_loader(tmp_path):
    write_fake_cifar(tmp_path)
    data = load_dataset("cifar10", str(tmp_path), seed=0)
    assert data.class_names == [f"thing{i}" for i in range(10)]
    assert len(data.train) == 180 and len(data.val) == 20 and len(data.test) == 60
    assert sorted(data.val.y.tolist()) == sorted(list(range(10)) * 2)  # stratified: 2 per class
    assert data.train.x.dtype == torch.uint8 and data.train.x.shape[1:] == (3, 32, 32)
    assert set(data.ood) == {"cifar100", "svhn"}
    assert data.ood["svhn"].shape == (30, 3, 32, 32) and data.ood["cifar100"].shape == (40, 3, 32, 32)
    with pytest.raises(DatasetNotAvailable, match="CIFAR-10-C/fog.npy not found"):
        data.shifted("fog", 1)
    corrupted = np.arange(5 * 60 * 32 * 32 * 3, dtype=np.int64).astype(np.uint8).reshape(300, 32, 32, 3)
    (tmp_path / "CIFAR-10-C").mkdir()
    np.save(tmp_path / "CIFAR-10-C" / "fog.npy", corrupted)
    assert torch.equal(data.shifted("fog", 2), torch.from_numpy(corrupted[60:120]).permute(0, 3, 1, 2))
    assert load_dataset("cifar10", str(tmp_path), seed=0).val.y.tolist() == data.val.y.tolist()  # seeded


def test_missing_cifar_says_where_it_looked(tmp_path):
    with pytest.raises(DatasetNotAvailable, match=f"looked for {tmp_path}/cifar-100-python/train.*download=True"):
        load_dataset("cifar100", str(tmp_path))


@pytest.mark.slow
def test_cifar10_sweep_promote_evaluate_export(tmp_path, home, in_process):
    """The whole path on CIFAR-10 files written here: corrupt, sweep (tiny ResNet-20 code), promote,
    evaluate with CIFAR-10-C and both OOD sets, export."""

    import mlflow
    from mlflow.tracking import MlflowClient

    from serving import ExportedModel, raw_inputs

    data_dir = tmp_path / "data"
    write_fake_cifar(data_dir, train_per_class=30, test=60)

    in_process("corrupt", "cifar10", "--data-dir", str(data_dir), check=True)
    out = in_process("run", "cifar10", "--data-dir", str(data_dir), "--trials", "1", "--epochs", "2", "--set",
                     "width=4", "--set", "depth=8", "--set", "batch_size=32", "--cpus-per-trial", "1", "--home",
                     str(home), check=True).stdout  # fmt: skip
    assert "champions on the test split" in out

    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cifar10")
    (evaluation,) = client.search_runs([experiment.experiment_id], "tags.`ovatune.kind` = 'evaluation'")
    metrics = evaluation.data.metrics
    for loss in LOSSES:
        assert 0 <= metrics[f"{loss}/test_accuracy"] <= 1
        for name in ("cifar100", "svhn"):
            assert 0 <= metrics[f"{loss}/ood_{name}_auroc"] <= 1
        assert all(f"{loss}/shift_{c}_5_ece" in metrics for c in ("fog", "snow", "motion_blur", "spatter"))
    trial = client.search_runs([experiment.experiment_id], "tags.`ovatune.kind` = 'trial'")[0]
    assert trial.data.params["width"] == "4" and trial.data.params["model"] == "resnet20"

    in_process(
        "export",
        "cifar10",
        "--losses",
        "ova",
        "--format",
        "onnx",
        "--out",
        str(tmp_path / "exports"),
        "--home",
        str(home),
        check=True,
    )
    exported = ExportedModel(tmp_path / "exports" / "ova" / "onnx")
    data = load_dataset("cifar10", str(data_dir))
    raw = raw_inputs(exported.info["preprocessing"], data.test.x).numpy()  # (60, 32, 32, 3) 0–255
    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    want = mlflow.pyfunc.load_model("models:/ovatune-cifar10-ova@champion").predict(raw.reshape(len(raw), -1))
    got = exported(raw)
    assert np.abs(got["probabilities"] - want["probabilities"]).max() <= 1e-5


def test_download_flag_fetches_cifar_and_svhn_through_torchvision(tmp_path, monkeypatch):
    """--download runs torchvision's download=True: archives in the published layout are served on
    127.0.0.1 (this machine cannot reach the real hosts), torchvision fetches, checks and extracts
    them, and the loader reads the result. A second run, with the server gone, downloads nothing."""
    import hashlib
    import http.server
    import pickle
    import tarfile
    import threading

    import torchvision

    from trainables.data import check_available

    source, served = tmp_path / "source", tmp_path / "served"
    served.mkdir()
    write_fake_cifar(source)
    rng = np.random.default_rng(1)
    write_cifar("cifar100", source, rng.integers(0, 256, (200, 32, 32, 3), dtype=np.uint8), np.arange(200) % 100, True)
    with open(source / "cifar-100-python" / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, f)

    def md5(path) -> str:
        return hashlib.md5(path.read_bytes()).hexdigest()

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(served))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    for cls, folder, meta_file in ((torchvision.datasets.CIFAR10, "cifar-10-batches-py", "batches.meta"),
                                   (torchvision.datasets.CIFAR100, "cifar-100-python", "meta")):  # fmt: skip
        with tarfile.open(served / cls.filename, "w:gz") as tar:
            tar.add(source / folder, arcname=folder)
        monkeypatch.setattr(cls, "url", f"{base}/{cls.filename}")
        monkeypatch.setattr(cls, "tgz_md5", md5(served / cls.filename))
        monkeypatch.setattr(cls, "train_list", [[n, md5(source / folder / n)] for n, _ in cls.train_list])
        monkeypatch.setattr(cls, "test_list", [[n, md5(source / folder / n)] for n, _ in cls.test_list])
        monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(source / folder / meta_file)})
    svhn = source / "svhn" / "test_32x32.mat"
    (served / "test_32x32.mat").write_bytes(svhn.read_bytes())
    monkeypatch.setattr(torchvision.datasets.SVHN, "split_list",
                        {"test": [f"{base}/test_32x32.mat", "test_32x32.mat", md5(svhn)]})  # fmt: skip

    data_dir = tmp_path / "data"
    try:
        check_available("cifar10", str(data_dir), download=True)
    finally:
        server.shutdown()
    data = load_dataset("cifar10", str(data_dir))
    assert len(data.train) + len(data.val) == 200 and data.class_names[0] == "thing0"
    assert data.ood["cifar100"].shape == (40, 3, 32, 32) and data.ood["svhn"].shape == (30, 3, 32, 32)
    check_available("cifar10", str(data_dir), download=True)  # all there and intact: no request is made
