"""``trainables.loop``: batching, a few real epochs per loss, inference and its round trip through a
checkpoint, reproducibility from the seed (no Ray)."""

import json

import pytest
import torch

from trainables.checkpoint import CHECKPOINT_META, load_classifier, save_checkpoint
from trainables.loop import batch_order, fit_epoch, predict_probabilities
from trainables.losses import LOSSES
from trainables.models import ProbabilityModel, build_classifier
from trainables.optim import build_optimizer
from trainables.train import cached_dataset


def test_batch_order_covers_each_example_once_per_pass():
    g = torch.Generator().manual_seed(0)
    batches = batch_order(10, 4, None, g)
    assert [len(b) for b in batches] == [4, 4, 2] and sorted(torch.cat(batches).tolist()) == list(range(10))
    steps = batch_order(10, 4, 5, torch.Generator().manual_seed(0))
    assert len(steps) == 5 and all(len(b) == 4 for b in steps)


@pytest.mark.parametrize("loss", list(LOSSES))
def test_a_few_epochs_learn_digits_and_checkpoints_round_trip(loss, tmp_path):
    torch.set_num_threads(1)
    config = {"dataset": "digits", "model": "mlp", "hidden": [32], "optimizer": "adam", "lr": 3e-3,
              "batch_size": 64, "epochs": 3, "seed": 0, "loss": loss}  # fmt: skip
    data = cached_dataset(config)
    torch.manual_seed(0)
    model = build_classifier(data.input_shape, data.num_classes, config)
    optimizer = build_optimizer(model, config)
    losses = [fit_epoch(model, LOSSES[loss], optimizer, data.train, config, e)[0] for e in range(3)]
    assert losses[-1] < losses[0]
    probs = predict_probabilities(model, data.val.x)
    assert (probs.argmax(axis=1) == data.val.y.numpy()).mean() > 0.7

    save_checkpoint(tmp_path, model, optimizer, 3, config, data, {"val_accuracy": 0.5})
    assert json.loads((tmp_path / CHECKPOINT_META).read_text())["metrics"] == {"val_accuracy": 0.5}
    restored, meta = load_classifier(tmp_path)  # torch.load(weights_only=True) inside
    assert meta["epoch"] == 3 and meta["class_names"][0] == "0"
    assert torch.allclose(torch.from_numpy(predict_probabilities(restored, data.val.x)), torch.from_numpy(probs))
    wrapped = ProbabilityModel(restored)
    with torch.no_grad():
        assert torch.allclose(wrapped(data.val.x[:5]).double(), torch.from_numpy(probs[:5]), atol=1e-6)
    # evaluation's model (inputs -> probabilities) goes through the same loop as training's classifier
    assert torch.allclose(torch.from_numpy(predict_probabilities(wrapped, data.val.x)), torch.from_numpy(probs))


def test_training_is_reproducible_from_the_seed():
    config = {"dataset": "toy2d", "model": "mlp", "hidden": [16, 16], "optimizer": "sgd", "lr": 0.01,
              "batch_size": 128, "steps_per_epoch": 50, "seed": 3, "loss": "ova_dm"}  # fmt: skip
    data = cached_dataset(config)
    results = []
    for _ in range(2):
        torch.manual_seed(3)
        model = build_classifier(data.input_shape, data.num_classes, config)
        optimizer = build_optimizer(model, config)
        results.append(fit_epoch(model, LOSSES["ova_dm"], optimizer, data.train, config, 0))
    assert results[0] == results[1]
