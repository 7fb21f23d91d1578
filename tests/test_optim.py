"""``trainables.optim``: the learning-rate schedule, the optimizers, the L2 factor and what it decays."""

import pytest
import torch

from trainables.models import build_classifier
from trainables.optim import build_optimizer, lr_factor


def test_lr_schedule_warmup_then_steps():
    config = {"warmup_epochs": 2, "lr_milestones": [4, 6], "lr_gamma": 0.2}
    assert [lr_factor(e, config) for e in range(8)] == pytest.approx([0.5, 1, 1, 1, 0.2, 0.2, 0.04, 0.04])
    assert lr_factor(100, {}) == 1.0


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
