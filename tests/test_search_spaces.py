"""Search spaces declare exactly the paper's ranges and budgets (DESIGN §5, Appendix E)."""

import dataclasses

import pytest
from ray import tune

from search_spaces import SPACES, Range, get_space
from trainables.data import DATASETS
from tuning.sweep import tune_domains

PAPER = {
    "cifar10": (100, {"lr": (1e-3, 1.0, True), "adam_beta1": (0.85, 0.99, False), "adam_eps": (1e-8, 1e-5, True)}),
    "cifar100": (50, {"lr": (1e-4, 1e-1, True), "l2": (1e-5, 1e-3, True)}),
    "imagenet": (50, {"lr": (0.5, 10.0, True), "l2": (1e-5, 1e-3, True)}),
    "clinc": (30, {"lr": (1e-5, 1e-3, False)}),
}


@pytest.mark.parametrize("name", list(PAPER))
def test_paper_spaces_have_the_papers_ranges_and_budgets(name):
    trials, ranges = PAPER[name]
    space = get_space(name)
    assert space.trials == trials
    assert {k: (r.low, r.high, r.log) for k, r in space.ranges.items()} == ranges


def test_paper_fixed_settings():
    assert get_space("cifar10").fixed["batch_size"] == 512 and get_space("cifar10").fixed["optimizer"] == "adam"
    c100 = get_space("cifar100").fixed
    assert (c100["batch_size"], c100["epochs"], c100["lr_milestones"], c100["lr_gamma"], c100["momentum"]) == (
        512,
        200,
        [60, 120, 160],
        0.2,
        0.9,
    )
    assert c100["optimizer"] == "sgd_nesterov" and c100["warmup_epochs"] == 1
    imagenet = get_space("imagenet").fixed
    assert (imagenet["batch_size"], imagenet["epochs"], imagenet["optimizer"]) == (4096, 90, "sgd_nesterov")
    assert imagenet["batch_size"] % imagenet["micro_batch_size"] == 0  # whole micro-batches per step
    clinc = get_space("clinc").fixed
    assert (clinc["batch_size"], clinc["epochs"], clinc["max_length"], clinc["optimizer"]) == (256, 1000, 32, "adam")
    toy = get_space("toy2d").fixed
    assert toy["hidden"] == [16, 16] and toy["batch_size"] == 128 and toy["epochs"] * toy["steps_per_epoch"] == 10_000
    assert toy["optimizer"] == "sgd"


@pytest.mark.parametrize("space", SPACES.values(), ids=list(SPACES))
def test_every_space_is_complete_and_converts_to_tune_domains(space):
    assert space.trials > 0 and space.mode in ("max", "min") and space.metric.startswith("val_")
    assert {"dataset", "model", "optimizer", "batch_size", "epochs"} <= set(space.fixed)
    assert space.resources["cpu"] > 0
    domains = tune_domains(space)
    assert set(domains) == set(space.ranges)
    for name, domain in domains.items():
        r = space.ranges[name]
        assert (domain.lower, domain.upper) == (r.low, r.high)
        sampler = type(domain.get_sampler()).__name__
        assert sampler == ("_LogUniform" if r.log else "_Uniform")
        assert isinstance(domain, tune.search.sample.Float)


def test_every_space_has_a_loader_and_a_model():
    from trainables.models import MODELS

    for space in SPACES.values():
        assert space.dataset in DATASETS and space.fixed["model"] in MODELS


def test_unknown_space_lists_the_valid_names():
    with pytest.raises(ValueError, match="digits, toy2d, cifar10, cifar100, imagenet, clinc"):
        get_space("mnist")


def test_ranges_are_validated():
    with pytest.raises(ValueError):
        Range(1.0, 0.5)
    with pytest.raises(ValueError):
        Range(0.0, 1.0, log=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_space("digits").trials = 3
