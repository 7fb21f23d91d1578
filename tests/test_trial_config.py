"""The trial-config schema (``trainables.trial_config``): every space passes it, ``--set`` and the
sweep's own options are checked against it before Ray starts, and ``--resume`` refuses options that
contradict the stored sweep."""

import pytest
import ray

from search_spaces import SPACES
from trainables.trial_config import (
    RENAMED_KEYS,
    TRIAL_CONFIG,
    InvalidSetting,
    check_overrides,
    check_space,
    check_value,
    settable,
    setting,
    upgraded,
)
from tuning.cli import main


@pytest.mark.parametrize("name", list(SPACES))
def test_every_search_space_passes_the_schema(name):
    space = SPACES[name]
    check_space(space)
    assert set(space.fixed) <= set(TRIAL_CONFIG) and set(space.ranges) <= set(settable())


def test_every_key_has_a_meaning_and_its_default_passes_its_own_check():
    for name, key in TRIAL_CONFIG.items():
        assert key.meaning and key.kind
        if key.default is not None:
            check_value(name, key.default)


def test_defaults_come_from_the_schema():
    assert setting({}, "adam_beta2") == 0.999 and setting({"adam_beta2": 0.9}, "adam_beta2") == 0.9


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"bogus_key": 3}, "unknown setting 'bogus_key'; the settable ones are: model, hidden"),
        ({"lr": 0.1}, "lr is searched by the digits space (log-uniform 0.0001 to 0.03)"),
        ({"batch_size": "abc"}, "batch_size must be an integer >= 1, got 'abc'"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ({"batch_size": 1.5}, "batch_size must be an integer >= 1"),
        ({"compile": 1}, "compile must be true or false, got 1"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of: sgd, sgd_nesterov, adam"),
        ({"model": "vgg"}, "model must be one of: mlp, resnet20"),
        ({"hidden": [64, "x"]}, "hidden must be a list of integers >= 1"),
        ({"adam_beta2": 1.0}, "adam_beta2 must be a number >= 0 and <= 0.999999"),
        ({"l2": float("nan")}, "l2 must be a number >= 0"),
        ({"threads": 4}, "threads (torch threads per trial) is set by --cpus-per-trial, not by --set"),
        ({"seed": 4}, "is set by --seed"),
        ({"dataset": "toy2d"}, "is set by the experiment"),
    ],
)
def test_overrides_a_trial_would_not_accept_are_refused_with_what_would_be(overrides, message):
    with pytest.raises(InvalidSetting) as error:
        check_overrides(SPACES["digits"], overrides)
    assert message in str(error.value)


def test_good_overrides_pass():
    assert check_overrides(SPACES["digits"], {"hidden": [64, 64], "l2": 0, "compile": False}) == {
        "hidden": [64, 64], "l2": 0, "compile": False}  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--set", "bogus_key=3"], "ovatune: error: --set: unknown setting 'bogus_key'"),
        (["--set", "lr=-1"], "ovatune: error: --set: lr is searched by the digits space"),
        (["--set", "batch_size=abc"], "ovatune: error: --set: batch_size must be an integer >= 1, got 'abc'"),
        (["--set", "width=8", "--set", "width=9"], "ovatune: error: --set width given more than once"),
        (["--set", "epochs=3", "--epochs", "4"], "ovatune: error: epochs given both as --set epochs"),
    ],
)
def test_bad_settings_are_one_error_line_before_ray_starts(argv, message, capsys, home):
    assert main(["sweep", "digits", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and len(err.strip().splitlines()) == 1, err
    assert not ray.is_initialized() and not (home / "ray_results").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seed", "100000000000000000000"], "--seed: must be an integer from 0 to 4294967295"),
        (["--seed", "-1"], "--seed: must be an integer from 0 to 4294967295"),
        (["--seed", "abc"], "--seed: expected an integer, got 'abc'"),
        (["--losses", "softmax,softmax"], "--losses: loss softmax given more than once"),
        (["--cpus-per-trial", "0"], "--cpus-per-trial: must be > 0, got 0"),
    ],
)
def test_bad_sweep_options_are_usage_errors(argv, message, capsys, home):
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "digits", *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not ray.is_initialized()


def test_a_config_from_before_a_key_was_renamed_reads_under_the_current_names():
    assert upgraded({"method": "dm", "lr": 0.1}) == {"loss": "dm", "lr": 0.1}
    assert upgraded({"method": "dm", "loss": "ova"})["loss"] == "ova"  # the current name wins
    assert all(new in TRIAL_CONFIG and old not in TRIAL_CONFIG for old, new in RENAMED_KEYS.items())


def test_a_checkpoint_from_before_the_loss_rename_loads_with_its_loss(tmp_path):
    from trainables.checkpoint import load_classifier, save_checkpoint
    from trainables.losses import DistanceHead
    from trainables.models import build_classifier
    from trainables.optim import build_optimizer
    from trainables.train import cached_dataset

    config = {"dataset": "digits", "model": "mlp", "hidden": [4], "optimizer": "adam", "lr": 1e-3, "loss": "ova_dm"}
    data = cached_dataset(config)
    model = build_classifier(data.input_shape, data.num_classes, config)
    old_config = {"method": config.pop("loss"), **config}  # what a checkpoint of an older sweep holds
    save_checkpoint(tmp_path, model, build_optimizer(model, old_config), 1, old_config, data, {})
    restored, meta = load_classifier(tmp_path)
    assert "method" in meta["config"] and restored.loss == "ova_dm" and isinstance(restored.head, DistanceHead)


def test_a_trial_of_a_sweep_from_before_the_loss_rename_trains_its_loss(tmp_path):
    """A real Tune trial given the old key (as Tuner.restore gives an older sweep's trials)."""
    from ray import tune

    from trainables.checkpoint import load_classifier
    from trainables.train import train_classifier

    old_config = {"dataset": "digits", "model": "mlp", "hidden": [8], "optimizer": "adam", "lr": 3e-3,
                  "batch_size": 64, "epochs": 1, "seed": 0, "threads": 1, "method": "dm"}  # fmt: skip
    ray.init(num_cpus=1, num_gpus=0, include_dashboard=False, logging_level="ERROR")
    try:
        tuner = tune.Tuner(
            train_classifier, param_space=old_config, run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)
        )
        (result,) = tuner.fit()
    finally:
        ray.shutdown()
    assert result.error is None and result.metrics["epoch"] == 1 and result.metrics["val_accuracy"] > 0.1
    model, _ = load_classifier(result.checkpoint.path)
    assert model.loss == "dm"
