"""ImageNet and ImageNet-C from an ImageFolder of JPEGs written here; gradient accumulation."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainables.data import DatasetNotAvailable, Split, check_available, input_batches, load_dataset
from trainables.data.imagenet import IMAGE_SIZE, IMAGENET_C
from trainables.loop import fit_epoch
from trainables.losses import get_loss
from trainables.models import build_classifier
from trainables.optim import build_optimizer

WNIDS = ["n01440764", "n01443537", "n01484850"]


def write_fake_imagenet(root: Path, train_per_class: int = 10, val_per_class: int = 2, corrupted: bool = True) -> None:
    """``root/imagenet/{train,val}/<wnid>/*.JPEG`` of odd sizes (one CMYK-free grey file among them) and,
    with ``corrupted``, ``root/ImageNet-C/<c>/<1..5>/<wnid>/*.JPEG`` (224×224) for the 15 corruptions."""
    rng = np.random.default_rng(0)

    def jpeg(path: Path, label: int, size: tuple[int, int], mode: str = "RGB") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 60, (*size, 3)) + 80 * label  # class-dependent brightness
        Image.fromarray(pixels.astype(np.uint8)).convert(mode).save(path, "JPEG")

    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for label, wnid in enumerate(WNIDS):
            for i in range(count):
                size = (int(rng.integers(160, 300)), int(rng.integers(160, 300)))
                mode = "L" if i == 0 else "RGB"  # a greyscale JPEG, as ImageNet has some
                jpeg(root / "imagenet" / split / wnid / f"{wnid}_{i}.JPEG", label, size, mode)
    if corrupted:
        for corruption in IMAGENET_C:
            for intensity in range(1, 6):
                for label, wnid in enumerate(WNIDS):  # the val images, corrupted: same names, same count
                    for i in range(val_per_class):
                        path = root / "ImageNet-C" / corruption / str(intensity) / wnid / f"{wnid}_{i}.JPEG"
                        jpeg(path, label, (224, 224))


def test_imagenet_loader_splits_and_shapes(tmp_path):
    write_fake_imagenet(tmp_path, corrupted=False)
    data = load_dataset("imagenet", str(tmp_path))
    assert data.class_names == WNIDS
    assert data.input_shape == (3, IMAGE_SIZE, IMAGE_SIZE)
    assert len(data.train) == 27 and len(data.val) == 3 and len(data.test) == 6
    assert sorted(data.val.y.tolist()) == [0, 1, 2]  # 10% of each class, stratified
    assert not set(p for p, _ in data.val.x.samples) & set(p for p, _ in data.train.x.samples)
    (batch,) = list(input_batches(data.test.x, 8))
    assert batch.shape == (6, 3, 224, 224) and batch.dtype == torch.uint8
    # evaluation images are Resize(256) + CenterCrop(224): deterministic, and brightness tells the class
    again = next(input_batches(data.test.x, 8, workers=1))
    assert torch.equal(batch, again)
    means = batch.float().mean(dim=(1, 2, 3))
    assert (means[data.test.y == 2] > means[data.test.y == 0] + 100).all()
    assert data.shifted is not None and len(data.shift_corruptions) == 15
    view = data.train.x.evaluation_view(10)  # training accuracy's sample: spread out, not augmented
    assert len(view) == 9 and view.transform is not data.train.x.transform
    assert sorted(set(view.labels.tolist())) == [0, 1, 2]
    with pytest.raises(DatasetNotAvailable, match=r"ImageNet-C/fog/3 not found.*zenodo"):
        data.shifted("fog", 3)
    (tmp_path / "ImageNet-C" / "fog" / "3" / WNIDS[0]).mkdir(parents=True)
    with pytest.raises(DatasetNotAvailable, match=r"fog/3 holds 0 images, not the test split's 6"):
        data.shifted("fog", 3)


def test_training_crops_are_seeded_random_crops(tmp_path):
    write_fake_imagenet(tmp_path, corrupted=False)
    train = load_dataset("imagenet", str(tmp_path)).train.x
    batches = [list(range(6))]
    first = next(iter(train.loader(batches, workers=1, seed=5)))[0]
    same = next(iter(train.loader(batches, workers=1, seed=5)))[0]
    other = next(iter(train.loader(batches, workers=1, seed=6)))[0]
    assert first.shape == (6, 3, 224, 224)
    assert torch.equal(first, same) and not torch.equal(first, other)


def test_missing_imagenet_says_where_it_looked_and_cannot_be_downloaded(tmp_path):
    with pytest.raises(DatasetNotAvailable, match=f"looked for {tmp_path}/imagenet/train.*image-net.org"):
        load_dataset("imagenet", str(tmp_path))
    with pytest.raises(DatasetNotAvailable, match="cannot be downloaded automatically"):
        check_available("imagenet", str(tmp_path), download=True)


def test_gradient_accumulation_gives_the_full_batch_step():
    """An MLP (no batch norm) steps to the same weights with 4 micro-batches of 8 as with one batch of 32."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 10), torch.randint(0, 3, (64,))
    results = []
    for micro in (None, 8):
        config = {"model": "mlp", "hidden": [16], "loss": "ova", "optimizer": "sgd", "lr": 0.5, "seed": 1,
                  "batch_size": 32, "micro_batch_size": micro}  # fmt: skip
        torch.manual_seed(0)
        model = build_classifier((10,), 3, config)
        loss, _ = fit_epoch(model, get_loss("ova"), build_optimizer(model, config), Split(x, y), config, 0)
        results.append((loss, torch.cat([p.detach().ravel() for p in model.parameters()])))
    (loss_full, weights_full), (loss_micro, weights_micro) = results
    assert loss_micro == pytest.approx(loss_full, rel=1e-6)
    assert torch.allclose(weights_micro, weights_full, atol=1e-6)
    assert not torch.allclose(
        weights_full, torch.cat([p.ravel() for p in build_classifier((10,), 3, config).parameters()])
    )


def test_a_set_of_one_batch_is_decoded_without_worker_processes(tmp_path, monkeypatch):
    """What evaluation asks of each ImageNet-C set (``workers`` = its threads): a worker decodes ahead
    of the model, so a set of one batch gets none, a set of n batches at most n - 1; same images."""
    from trainables.data.imagenet import ImageFiles

    write_fake_imagenet(tmp_path, corrupted=False)
    files = load_dataset("imagenet", str(tmp_path)).test.x  # 6 files
    asked = []
    loader = ImageFiles.loader
    monkeypatch.setattr(ImageFiles, "loader", lambda self, batches, workers, seed: asked.append(workers) or loader(
        self, batches, workers, seed))  # fmt: skip
    one = list(files.batches(8, workers=4))
    three = list(files.batches(2, workers=4))
    assert asked == [0, 2]
    assert torch.equal(torch.cat(one), torch.cat(three))


@pytest.mark.slow
def test_imagenet_sweep_promote_evaluate(tmp_path, home, in_process):
    """The whole path on an ImageFolder: a tiny ResNet-50 (same code) trained from JPEGs by DataLoader
    workers with accumulated gradients, promoted, evaluated on all 15 ImageNet-C corruptions. Two
    losses: the path is the same for every loss, and each model costs about 25 s to evaluate here
    (a ResNet-50 at 224×224 on 77 sets); seed 0 gives one that trains and one that diverges."""

    from mlflow.tracking import MlflowClient

    write_fake_imagenet(tmp_path / "data")
    # fmt: off
    out = in_process("run", "imagenet", "--data-dir", str(tmp_path / "data"), "--losses", "softmax,ova",
                     "--trials", "1", "--epochs", "2", "--set", "width=4", "--set", "batch_size=8",
                     "--set", "micro_batch_size=4", "--set", "warmup_epochs=1", "--cpus-per-trial", "1",
                     "--home", str(home), check=True).stdout
    # fmt: on
    assert "champions on the test split" in out
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("imagenet")
    (evaluation,) = client.search_runs([experiment.experiment_id], "tags.`ovatune.kind` = 'evaluation'")
    metrics = evaluation.data.metrics
    trials = client.search_runs([experiment.experiment_id], "tags.`ovatune.kind` = 'trial'")
    outcome = {t.data.tags["ovatune.loss"]: t.data.tags["ovatune.outcome"] for t in trials}
    # ImageNet's lr range reaches 10: a 2-epoch trial may blow up (seed 0: ova at lr 8.1, a training
    # loss of 1e9 and NaN validation probabilities). Such a trial is diverged, never a champion.
    assert sorted(outcome) == ["ova", "softmax"]
    evaluated = [loss for loss in outcome if outcome[loss] == "completed"]
    assert "softmax" in evaluated  # lr 1.2
    for loss in outcome:
        if loss not in evaluated:
            assert outcome[loss] == "diverged" and f"{loss}/test_accuracy" not in metrics
            continue
        assert 0 <= metrics[f"{loss}/test_accuracy"] <= 1
        assert all(f"{loss}/shift_{c}_{i}_ece" in metrics for c in IMAGENET_C for i in range(1, 6))
    assert {t.data.params["micro_batch_size"] for t in trials} == {"4"}
    assert all(t.data.metrics["train_loss"] > 0 for t in trials)
    # where MLflow builds the model's environment (`mlflow models serve`), torchvision's ResNet-50 comes too
    import mlflow.pyfunc

    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    requirements = Path(mlflow.pyfunc.get_model_dependencies("models:/ovatune-imagenet-softmax@champion")).read_text()
    assert {"torchvision", "torch"} <= {r.split("==")[0] for r in requirements.split()}
