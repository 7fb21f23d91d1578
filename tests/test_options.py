"""``tuning.options``: each choice's meaning is its help, and its ``make`` does what the choice
says, so a new sampler, scheduler, policy or format is one entry. (The parser's side is in test_cli.)"""

import importlib

import optuna
import pytest

from search_spaces import get_space
from tuning.champion import Contest
from tuning.options import FORMATS, POLICIES, REGISTERS_NOTHING, SAMPLERS, SCHEDULERS


def test_schedulers_make_fifo_or_per_loss_asha():
    from tuning.sweep import PerLossASHA

    space = get_space("digits")
    assert SCHEDULERS["fifo"].make(space, 10) is None
    asha = SCHEDULERS["asha"].make(space, 10)
    assert isinstance(asha, PerLossASHA) and asha._settings["max_t"] == 10 and asha._settings["mode"] == space.mode


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_each_sampler_makes_a_seeded_optuna_sampler(name):
    sampler = SAMPLERS[name].make(seed=3)
    assert isinstance(sampler, optuna.samplers.BaseSampler)
    assert type(sampler).__name__.lower().startswith(name)  # RandomSampler, TPESampler


def test_each_policy_judges_a_contest_with_a_reason():
    beaten, tied = (
        Contest("v1 (val_accuracy 0.9)", "val_accuracy", 0.95, True),
        Contest("v1", "val_accuracy", 0.9, False),
    )
    judged = {name: (policy.make(beaten)[0], policy.make(tied)[0]) for name, policy in POLICIES.items()}
    assert judged["better"] == (True, False) and judged["always"] == (True, True) and judged["first"] == (False, False)
    assert REGISTERS_NOTHING in POLICIES
    assert all("v1" in policy.make(beaten)[1] for policy in POLICIES.values())


@pytest.mark.parametrize("name", list(FORMATS))
def test_each_format_names_a_writer_of_the_export_module(name):
    module, _, function = FORMATS[name].make.__name__.rpartition(".")
    assert module == "tuning.export" and callable(getattr(importlib.import_module(module), function))
