"""The trial's building blocks, without Ray: schedule, batching, training, checkpoints."""

import json

import pytest
import torch

from trainables.checkpoint import CHECKPOINT_META, load_classifier, save_checkpoint
from trainables.loop import batch_order, fit_epoch, predict_probabilities
from trainables.losses import LOSSES
from trainables.models import ProbabilityModel, build_classifier
from trainables.optim import build_optimizer, lr_factor
from trainables.train import cached_dataset


def test_lr_schedule_warmup_then_steps():
    config = {"warmup_epochs": 2, "lr_milestones": [4, 6], "lr_gamma": 0.2}
    assert [lr_factor(e, config) for e in range(8)] == pytest.approx([0.5, 1, 1, 1, 0.2, 0.2, 0.04, 0.04])
    assert lr_factor(100, {}) == 1.0


def test_batch_order_covers_each_example_once_per_pass():
    g = torch.Generator().manual_seed(0)
    batches = batch_order(10, 4, None, g)
    assert [len(b) for b in batches] == [4, 4, 2] and sorted(torch.cat(batches).tolist()) == list(range(10))
    steps = batch_order(10, 4, 5, torch.Generator().manual_seed(0))
    assert len(steps) == 5 and all(len(b) == 4 for b in steps)


def test_optimizers_and_l2():
    params = torch.nn.Linear(2, 1)
    adam = build_optimizer(params, {"optimizer": "adam", "lr": 0.1, "adam_beta1": 0.9, "adam_eps": 1e-7})
    assert adam.defaults["betas"] == (0.9, 0.999) and adam.defaults["eps"] == 1e-7
    sgd = build_optimizer(params, {"optimizer": "sgd_nesterov", "lr": 0.1, "l2": 1e-4})
    assert sgd.defaults["nesterov"] and sgd.param_groups[0]["weight_decay"] == pytest.approx(
        2e-4
    )  # d/dw l2·w² = 2·l2·w
    with pytest.raises(ValueError, match="sgd, sgd_nesterov, adam"):
        build_optimizer(params, {"optimizer": "lamb", "lr": 0.1})


@pytest.mark.parametrize("optimizer", ["sgd", "sgd_nesterov", "adam"])
def test_class_centres_are_not_weight_decayed_and_the_body_is(optimizer):
    """With l2 > 0 and a zero loss gradient, one step moves a parameter only by its decay term."""
    config = {"model": "mlp", "hidden": [4], "loss": "ova_dm", "optimizer": optimizer, "lr": 0.1, "l2": 0.05}
    torch.manual_seed(0)
    model = build_classifier((3,), 2, config)
    with torch.no_grad():
        model.head.weight.normal_()  # centres away from the origin, where decay would pull them in
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    opt = build_optimizer(model, config)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # no data term: only weight decay can move anything
    opt.step()
    assert torch.equal(model.head.weight, before["head.weight"])  # the centres' update has no decay term
    body = [name for name in before if name.startswith("body.") and before[name].abs().sum() > 0]
    assert body and all(not torch.equal(dict(model.named_parameters())[n], before[n]) for n in body)
    assert [g["weight_decay"] for g in opt.param_groups] == [pytest.approx(0.1), 0.0]


def test_a_dense_head_is_weight_decayed_like_the_body():
    model = build_classifier((3,), 2, {"model": "mlp", "hidden": [4], "loss": "softmax"})
    opt = build_optimizer(model, {"optimizer": "sgd", "lr": 0.1, "l2": 0.05})
    assert len(opt.param_groups) == 1 and len(opt.param_groups[0]["params"]) == len(list(model.parameters()))


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
