"""``trainables.pack``: K trials trained as one vectorised model reproduce K trials trained alone.

Each test trains the same members twice, in a pack and each by itself through the trial's own code
(``build_classifier`` under the trial's seed, ``build_optimizer``, ``set_epoch_lr``, ``fit_epoch``,
``predict_probabilities``), and compares every epoch's training loss and accuracy and validation
metrics. The tolerance: the pack's kernels are batched (``bmm`` for ``mm``, grouped convolutions),
which sum the same products in another order, so a step agrees to float32 rounding (~1e-7 relative)
and the difference grows with the steps taken, as any reassociation's does. Measured over these
three epochs: at most 6.5e-8 (MLP, 63 steps) and 3.8e-7 (ResNet) relative; the tests allow 1e-5. A
pack that mixes its members (one data order, one learning rate, the decay of a distance head's
centres) is off by far more: each ``broken`` case below shows that the comparison catches it.
"""

from __future__ import annotations

import math

import pytest
import torch

from evaluation.metrics import classification_metrics
from trainables.data import Split, load_dataset
from trainables.data.augment import pad_crop_flip
from trainables.loop import batch_order, fit_epoch, predict_probabilities
from trainables.losses import get_loss
from trainables.models import build_classifier
from trainables.optim import build_optimizer, set_epoch_lr
from trainables.pack import Pack, fit_pack_epoch, pack_problem

TOLERANCE = 1e-5

MLP = {"dataset": "digits", "model": "mlp", "hidden": [32, 32], "optimizer": "adam", "batch_size": 64,
       "epochs": 3, "loss": "ova_dm", "l2": 1e-3, "lr_milestones": [2], "lr_gamma": 0.5}  # fmt: skip
MLP_MEMBERS = [
    {"seed": 11, "lr": 3e-3, "adam_beta1": 0.9, "adam_eps": 1e-8},
    {"seed": 12, "lr": 1e-2, "adam_beta1": 0.86, "adam_eps": 1e-6},
    {"seed": 13, "lr": 5e-4, "adam_beta1": 0.97, "adam_eps": 3e-7},
]
RESNET = {"dataset": "synthetic", "model": "resnet20", "depth": 8, "width": 4, "optimizer": "sgd_nesterov",
          "batch_size": 16, "steps_per_epoch": 4, "epochs": 3, "loss": "softmax", "l2": 5e-4}  # fmt: skip
RESNET_MEMBERS = [
    {"seed": 21, "lr": 0.05, "momentum": 0.9},
    {"seed": 22, "lr": 0.02, "momentum": 0.8},
    {"seed": 23, "lr": 0.1, "momentum": 0.95},
]


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits")
    return data.input_shape, data.num_classes, data.train, data.val


@pytest.fixture(scope="module")
def images():
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (160, 3, 8, 8), dtype=torch.uint8, generator=generator)
    y = torch.randint(0, 4, (160,), generator=generator)
    x[y == 1, 0] //= 2  # something to learn
    return (3, 8, 8), 4, Split(x[:128], y[:128]), Split(x[128:], y[128:])


def _metrics(model, train_result, val: Split) -> dict[str, float]:
    scores = classification_metrics(predict_probabilities(model, val.x), val.y.numpy())
    return {"train_loss": train_result[0], "train_accuracy": train_result[1], **scores}


def train_alone(config, data, augment=None) -> list[dict[str, float]]:
    """One trial as ``trainables.train.train_loop`` trains it: its metrics per epoch."""
    input_shape, classes, train, val = data
    torch.manual_seed(int(config["seed"]))
    model = build_classifier(input_shape, classes, config)
    optimizer = build_optimizer(model, config)
    epochs = []
    for epoch in range(int(config["epochs"])):
        set_epoch_lr(optimizer, config, epoch)
        result = fit_epoch(model, get_loss(config["loss"]), optimizer, train, config, epoch, augment)
        epochs.append(_metrics(model, result, val))
    return epochs


def build_pack(configs, data) -> Pack:
    input_shape, classes, _, _ = data
    models = []
    for config in configs:
        torch.manual_seed(int(config["seed"]))
        models.append(build_classifier(input_shape, classes, config))
    return Pack(models, configs)


def train_packed(configs, data, augment=None, epochs=None, pack=None, start=0) -> list[list[dict[str, float]]]:
    """The members trained as one pack: each member's metrics per epoch."""
    _, _, train, val = data
    pack = pack or build_pack(configs, data)
    history: list[list[dict[str, float]]] = [[] for _ in configs]
    for epoch in range(start, epochs or int(configs[0]["epochs"])):
        pack.optimizer.set_epoch_lr(epoch)
        results = fit_pack_epoch(pack, get_loss(configs[0]["loss"]), train, epoch, augment)
        for k, result in enumerate(results):
            model, _ = pack.member(k)
            history[k].append(_metrics(model, result, val))
    return history


def assert_same_trials(packed, alone):
    assert len(packed) == len(alone)
    for member, (ours, theirs) in enumerate(zip(packed, alone)):
        assert len(ours) == len(theirs)
        for epoch, (a, b) in enumerate(zip(ours, theirs)):
            for key in b:
                assert math.isclose(a[key], b[key], rel_tol=TOLERANCE, abs_tol=TOLERANCE), (member, epoch, key, a, b)


def members(base, overrides):
    return [base | o for o in overrides]


def test_a_pack_of_mlps_reproduces_each_trial_trained_alone(digits):
    configs = members(MLP, MLP_MEMBERS)
    assert_same_trials(train_packed(configs, digits), [train_alone(c, digits) for c in configs])


def test_a_pack_of_resnets_with_batch_norm_and_augmentation_reproduces_each_trial(images):
    configs = members(RESNET, RESNET_MEMBERS)
    packed = train_packed(configs, images, pad_crop_flip)
    assert_same_trials(packed, [train_alone(c, images, pad_crop_flip) for c in configs])


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_each_optimizer_steps_each_member_as_torch_optim_does(digits, optimizer):
    configs = members(MLP | {"optimizer": optimizer, "epochs": 2, "momentum": 0.5},
                      MLP_MEMBERS[:2])  # fmt: skip
    assert_same_trials(train_packed(configs, digits), [train_alone(c, digits) for c in configs])


@pytest.mark.parametrize(
    "broken",
    [
        "one data order",  # every member trains on member 0's batches
        "one learning rate",  # member 0's lr for all
        "decayed centres",  # the distance head's class centres decayed like the rest
    ],
)
def test_the_comparison_catches_a_pack_that_mixes_its_members(digits, monkeypatch, broken):
    configs = members(MLP, MLP_MEMBERS)
    alone = [train_alone(c, digits) for c in configs]
    if broken == "one data order":
        real = batch_order
        monkeypatch.setattr("trainables.pack.batch_order",
                            lambda n, size, steps, _: real(n, size, steps, torch.Generator().manual_seed(0)))  # fmt: skip
    elif broken == "one learning rate":

        def one_lr(self, epoch):
            for optimizer in self.optimizers:
                set_epoch_lr(optimizer, self.configs[0], epoch)

        monkeypatch.setattr("trainables.pack.PackOptimizer.set_epoch_lr", one_lr)
    else:
        real = build_optimizer

        def decaying_centres(*args, **kwargs):
            optimizer = real(*args, **kwargs)
            for group in optimizer.param_groups:
                group["weight_decay"] = optimizer.param_groups[0]["weight_decay"]
            return optimizer

        monkeypatch.setattr("trainables.pack.build_optimizer", decaying_centres)
    with pytest.raises(AssertionError):
        assert_same_trials(train_packed(configs, digits), alone)


def test_a_diverging_member_is_dropped_and_the_others_go_on_unchanged(digits):
    configs = members(MLP, MLP_MEMBERS)
    exploding = MLP | {"seed": 14, "lr": 1e30, "adam_beta1": 0.5, "adam_eps": 1e-8}  # overflows in epoch 1
    pack = build_pack([configs[0], exploding, configs[1]], digits)
    _, _, train, val = digits
    history: dict[int, list] = {0: [], 1: [], 2: []}
    alive = [0, 1, 2]  # the original member of each place in the pack
    for epoch in range(MLP["epochs"]):
        pack.optimizer.set_epoch_lr(epoch)
        results = fit_pack_epoch(pack, get_loss(MLP["loss"]), train, epoch)
        gone = [k for k, (train_loss, _) in enumerate(results) if not math.isfinite(train_loss)]
        for k, result in enumerate(results):
            if k not in gone:
                history[alive[k]].append(_metrics(pack.member(k)[0], result, val))
        if gone:
            assert ([alive[k] for k in gone], epoch) == ([1], 0)
            pack.keep([k for k in range(len(pack)) if k not in gone])
            alive = [m for k, m in enumerate(alive) if k not in gone]
    assert alive == [0, 2] and history[1] == []
    assert_same_trials([history[0], history[2]], [train_alone(c, digits) for c in configs[:2]])


def test_a_member_leaves_the_pack_as_an_ordinary_trial_state_and_resumes_exactly(digits):
    configs = members(MLP, MLP_MEMBERS)
    straight = train_packed(configs, digits)
    # two epochs, then each member as its trial's checkpoint holds it (state dicts), then a new pack
    pack = build_pack(configs, digits)
    train_packed(configs, digits, epochs=2, pack=pack)
    states = [pack.member(k) for k in range(len(pack))]
    saved = [(m.state_dict(), o.state_dict()) for m, o in states]
    input_shape, classes, _, _ = digits
    models = []
    for config, (weights, _) in zip(configs, saved):
        model = build_classifier(input_shape, classes, config)
        model.load_state_dict(weights)
        models.append(model)
    resumed = Pack(models, configs, [o for _, o in saved])
    last = train_packed(configs, digits, pack=resumed, start=2)
    assert [h[-1] for h in last] == [h[-1] for h in straight]  # the same arithmetic: bit for bit
    # and a member's state is what torch.optim.Adam holds for that trial alone
    torch.manual_seed(int(configs[0]["seed"]))
    model = build_classifier(input_shape, classes, configs[0])
    optimizer = build_optimizer(model, configs[0])
    optimizer.load_state_dict(saved[0][1])
    assert set(optimizer.state_dict()["state"]) == set(range(len(list(model.parameters()))))
    assert float(optimizer.state_dict()["state"][0]["step"]) == 2 * math.ceil(len(digits[2]) / MLP["batch_size"])


def test_members_that_cannot_share_a_pack_are_refused_with_the_reason():
    configs = members(MLP, MLP_MEMBERS)
    assert pack_problem(configs) is None
    assert "batch_size" in pack_problem([configs[0], configs[1] | {"batch_size": 32}])
    assert "loss" in pack_problem([configs[0], configs[1] | {"loss": "softmax"}])
    assert "workers_per_trial" in pack_problem([configs[0] | {"workers_per_trial": 2}])
    with pytest.raises(ValueError, match="hidden"):
        Pack([build_classifier((64,), 10, c) for c in configs[:2]], [configs[0], configs[1] | {"hidden": [8]}])
