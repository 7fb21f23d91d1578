"""Every key of a trial's config, in one place: its type, allowed values, default and meaning.

A trial's config is flat (see ``trainables.train``): a search space's ``fixed`` settings and
sampled ``ranges``, the user's ``--set KEY=VALUE`` overrides, and what ovatune itself adds (the
loss, the trial's number, seeds, resources). ``TRIAL_CONFIG`` lists each key once;
``check_overrides`` is what ``--set`` passes through before Ray starts, ``check_space`` what every
search space passes (tested over the registry), and ``check_value`` what both use.

A key with ``set_by`` is not the user's to ``--set``: it names what sets it instead (a CLI flag, the
experiment, the dataset or ovatune itself).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

INT, FLOAT, BOOL, TEXT, INTS = "integer", "number", "boolean", "text", "list of integers"


@dataclass(frozen=True)
class ConfigKey:
    """One key of a trial's config.

    Attributes:
        name: the flat config key.
        kind: INT, FLOAT, BOOL, TEXT or INTS.
        meaning: one line for ``--help`` and error messages.
        default: what the trainable uses when the key is absent (None: required, the model's own, or
            no limit, as the description says).
        low, high: inclusive bounds of a number (or of each integer of a list).
        choices: the allowed texts, or a function returning them (a registry that imports torch).
        set_by: None if a space or ``--set`` may set it; else what sets it.
    """

    name: str
    kind: str
    meaning: str
    default: Any = None
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None
    set_by: str | None = None

    def allowed(self) -> str:
        """The allowed values in words, e.g. 'an integer >= 1'."""
        if self.choices is not None:
            return "one of: " + ", ".join(_choices(self))
        if self.kind == BOOL:
            return "true or false"
        bounds = []
        if self.low is not None:
            bounds.append(f">= {self.low:g}" if self.low != 0 or self.kind == INT else ">= 0")
        if self.high is not None:
            bounds.append(f"<= {self.high:g}")
        article = "an" if self.kind == INT else "a"
        return f"{article} {self.kind}" + (" " + " and ".join(bounds) if bounds else "")


def _models() -> tuple[str, ...]:
    from trainables.models import MODELS  # imports torch: only when a model name is checked

    return tuple(MODELS)


def _datasets() -> tuple[str, ...]:
    from trainables.data import DATASETS

    return tuple(DATASETS)


def _losses() -> tuple[str, ...]:
    from trainables.losses import LOSSES

    return tuple(LOSSES)


# Keys renamed since stores were first written. A config read back from an older store (a resumed
# trial's, a checkpoint's, a registered model's bundle) is read under the current names, so a sweep
# started before a rename still resumes and its models still load.
RENAMED_KEYS = {"method": "loss"}  # old name -> current name


def upgraded(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with every key of ``RENAMED_KEYS`` under its current name (a current name wins)."""
    current = dict(config)
    for old, new in RENAMED_KEYS.items():
        if old in current:
            value = current.pop(old)
            current.setdefault(new, value)
    return current


OPTIMIZERS = ("sgd", "sgd_nesterov", "adam")
SEED_MAX = 2**32 - 1  # NumPy's and Optuna's seeds are 32-bit


_KEYS = [
    # the model
    ConfigKey("model", TEXT, "the network body", choices=_models),
    ConfigKey("hidden", INTS, "an MLP's hidden layer widths", low=1),
    ConfigKey("width", INT, "a ResNet's base width or BERT's hidden size; default: the model's", low=1),
    ConfigKey("depth", INT, "a ResNet's or BERT's depth; default: the model's", low=1),
    ConfigKey("widen", INT, "a wide ResNet's widening factor", 10, low=1),
    ConfigKey("heads", INT, "BERT's attention heads", 4, low=1),
    ConfigKey("intermediate", INT, "BERT's feed-forward width", 1024, low=1),
    # optimisation
    ConfigKey("optimizer", TEXT, "the optimizer", choices=OPTIMIZERS),
    ConfigKey("lr", FLOAT, "the learning rate", low=1e-12),
    ConfigKey("momentum", FLOAT, "SGD's momentum; default 0, with Nesterov 0.9", low=0.0, high=0.999999),
    ConfigKey("adam_beta1", FLOAT, "Adam's beta1", 0.9, low=0.0, high=0.999999),
    ConfigKey("adam_beta2", FLOAT, "Adam's beta2", 0.999, low=0.0, high=0.999999),
    ConfigKey("adam_eps", FLOAT, "Adam's epsilon", 1e-8, low=1e-30),
    ConfigKey(
        "l2", FLOAT, "the L2 factor on the loss, l2 * sum of squared weights, class centres excepted", 0.0, low=0.0
    ),
    ConfigKey("batch_size", INT, "examples per optimizer step; a multi-worker trial's global batch", low=1),
    ConfigKey("micro_batch_size", INT, "examples per forward pass; gradients accumulate to batch_size", low=1),
    ConfigKey("epochs", INT, "epochs per trial; reporting periods with steps_per_epoch", low=1),
    ConfigKey("steps_per_epoch", INT, "optimizer steps per epoch instead of one pass over the data", low=1),
    ConfigKey("val_examples", INT, "validate on N evenly spaced examples, as limit_val_batches; default: all", low=1),
    ConfigKey("warmup_epochs", INT, "epochs of linear learning-rate warm-up", 0, low=0),
    ConfigKey("lr_milestones", INTS, "epochs at which the learning rate is multiplied by lr_gamma", [], low=0),
    ConfigKey("lr_gamma", FLOAT, "the learning-rate factor at each milestone", 0.1, low=1e-12),
    ConfigKey("sync_batchnorm", BOOL, "batch statistics over the global batch of a multi-GPU trial", False),
    ConfigKey("compile", BOOL, "torch.compile the model; worth it on GPUs", False),
    # bookkeeping a space or a user may change
    ConfigKey("checkpoint_every", INT, "epochs between checkpoints; the last epoch always has one", 1, low=1),
    ConfigKey("loader_workers", INT, "DataLoader processes for file-based data; default: the trial's CPUs", low=0),
    # set by the experiment, the dataset, the CLI's own flags or ovatune
    ConfigKey("dataset", TEXT, "the experiment's dataset", choices=_datasets, set_by="the experiment"),
    ConfigKey("experiment", TEXT, "the experiment's name", set_by="the experiment"),
    ConfigKey("data_seed", INT, "seeds the validation split", 0, low=0, set_by="the experiment"),
    ConfigKey("max_length", INT, "tokens per text input", low=1, set_by="the dataset's tokenization"),
    ConfigKey("vocab_size", INT, "a text model's vocabulary", low=1, set_by="the dataset's tokenizer"),
    ConfigKey("pad_id", INT, "a text model's padding token", 0, low=0, set_by="the dataset's tokenizer"),
    ConfigKey("loss", TEXT, "the loss", choices=_losses, set_by="--losses"),
    ConfigKey("trial_number", INT, "the trial's number within its loss", low=0, set_by="the sweep"),
    ConfigKey(
        "seed", INT, "seeds the model's initialisation and the data order", 0, low=0, high=SEED_MAX, set_by="--seed"
    ),  # fmt: skip
    ConfigKey("data_dir", TEXT, "where on-disk datasets live", set_by="--data-dir"),
    ConfigKey("threads", INT, "torch threads per trial", 1, low=1, set_by="--cpus-per-trial"),
    ConfigKey("workers_per_trial", INT, "Ray Train workers per trial", 1, low=1, set_by="--workers-per-trial"),
    ConfigKey("cpus_per_worker", FLOAT, "CPUs per worker", 1, low=0, set_by="--cpus-per-trial"),
    ConfigKey("gpus_per_worker", FLOAT, "GPUs per worker", 0, low=0, set_by="--gpus-per-trial"),
    ConfigKey("resume_from", TEXT, "a multi-worker trial's checkpoint (its path and file system)", set_by="Ray Train"),
]
TRIAL_CONFIG: dict[str, ConfigKey] = {key.name: key for key in _KEYS}


def setting(config: Mapping[str, Any], name: str) -> Any:
    """``config[name]``, else the schema's default for ``name`` (the one place defaults live)."""
    return config.get(name, TRIAL_CONFIG[name].default)


class InvalidSetting(ValueError):
    """A config key or value that the trial would not accept; the message says what would be."""


def _choices(key: ConfigKey) -> tuple[str, ...]:
    return key.choices() if callable(key.choices) else key.choices


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_value(name: str, value: Any) -> Any:
    """``value`` if key ``name`` accepts it (an integer where a number is asked is accepted as is).

    Raises:
        InvalidSetting: an unknown key, or a value of the wrong type or out of range.
    """
    key = TRIAL_CONFIG.get(name)
    if key is None:
        raise InvalidSetting(f"unknown setting {name!r}; the settable ones are: {', '.join(settable())}")
    wrong = InvalidSetting(f"{name} must be {key.allowed()}, got {value!r} ({name}: {key.meaning})")
    if value is None and key.set_by is not None:
        return value  # e.g. no --data-dir
    if key.kind == INT:
        ok = _is_int(value) and _within(key, value)
    elif key.kind == FLOAT:
        ok = (_is_int(value) or isinstance(value, float)) and math.isfinite(value) and _within(key, value)
    elif key.kind == BOOL:
        ok = isinstance(value, bool)
    elif key.kind == INTS:
        ok = isinstance(value, list) and all(_is_int(v) and _within(key, v) for v in value)
    else:
        ok = isinstance(value, str) and (key.choices is None or value in _choices(key))
    if not ok:
        raise wrong
    return value


def _within(key: ConfigKey, value: float) -> bool:
    return (key.low is None or value >= key.low) and (key.high is None or value <= key.high)


def settable(searched: Mapping[str, Any] = {}) -> list[str]:
    """The keys ``--set`` accepts (those no flag or part of ovatune sets, and not ``searched``)."""
    return [name for name, key in TRIAL_CONFIG.items() if key.set_by is None and name not in searched]


def check_overrides(space: Any, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` (``--set`` KEY=VALUE pairs) if a trial of ``space`` accepts each.

    Raises:
        InvalidSetting: an unknown key (the message lists the settable ones), a key the space
            searches (pointing at the space) or one a flag sets (naming it), a wrong type or range.
    """
    for name, value in overrides.items():
        key = TRIAL_CONFIG.get(name)
        if name in space.ranges:
            bounds = space.ranges[name]
            raise InvalidSetting(
                f"{name} is searched by the {space.name} space ({'log-' if bounds.log else ''}uniform "
                f"{bounds.low:g} to {bounds.high:g}), so --set cannot fix it; change its range in "
                f"search_spaces/{space.name}.py, or --set one of: {', '.join(settable(space.ranges))}"
            )
        if key is not None and key.set_by is not None:
            raise InvalidSetting(f"{name} ({key.meaning}) is set by {key.set_by}, not by --set")
        if key is None:
            raise InvalidSetting(
                f"unknown setting {name!r}; the settable ones are: {', '.join(settable(space.ranges))}"
            )
        check_value(name, value)
    return dict(overrides)


def check_space(space: Any) -> None:
    """Check a search space against the schema: its fixed settings' keys and values, and that each
    range is a number key whose bounds the key allows.

    Raises:
        InvalidSetting: the first key or value that is not allowed.
    """
    for name, value in space.fixed.items():
        check_value(name, value)
    for name, bounds in space.ranges.items():
        key = TRIAL_CONFIG.get(name)
        if key is None or key.kind != FLOAT or key.set_by is not None:
            raise InvalidSetting(f"{space.name}: range {name!r} is not a searchable number of the trial config")
        check_value(name, bounds.low)
        check_value(name, bounds.high)
