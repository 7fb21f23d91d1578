"""The choices of the sweep, promotion and export commands: each with what it means (the parser's
choices and ``--help``) and what it does (``make``), so adding a sampler, scheduler, promotion
policy or export format is one entry here.

Light to import: the parser reads this module, and each ``make`` imports what it needs (Optuna, Ray
Tune, torch) only when it is called.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from serving.formats import EXPORT_FILES


@dataclass(frozen=True)
class Choice:
    """One value of an option: its meaning, and the function that does it."""

    meaning: str
    make: Callable[..., Any]


def _from(module: str, name: str) -> Callable[..., Any]:
    """``module.name``, imported when first called (keeps this registry free of heavy imports)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = f"{module}.{name}"
    return call


# --smoke-test: the whole path (sweep, promotion, evaluation) in seconds.
SMOKE_TEST = {"trials": 1, "epochs": 2}

# --scheduler: make(space, epochs) -> a Ray Tune scheduler, or None (Tune's FIFO).
SCHEDULERS = {
    "fifo": Choice("runs every trial to the end (the default)", lambda space, epochs: None),
    "asha": Choice(
        "stops poor trials early, within each loss (Ray Tune's ASHA)", _from("tuning.sweep", "per_loss_asha")
    ),
}
# --sampler: make(seed) -> an Optuna sampler, one per loss.
SAMPLERS = {
    "random": Choice("Optuna's RandomSampler: random search, as the paper (the default)",
                     _from("optuna.samplers", "RandomSampler")),
    "tpe": Choice("Optuna's TPESampler", _from("optuna.samplers", "TPESampler")),
}  # fmt: skip
# --promote: when a sweep's best version of a loss becomes the champion. make(contest) -> (becomes
# champion, why), where the loss already has a champion (``tuning.champion.Contest``); the first
# model of a loss always becomes its champion. "never" registers nothing, so it is never asked.
POLICIES = {
    "better": Choice("only if it beats the current champion on the selection metric (ties keep the current one)",
                     _from("tuning.champion", "if_better")),
    "always": Choice("always: the newest sweep's best replaces the champion", _from("tuning.champion", "always")),
    "first": Choice("only if the loss has no champion yet (the default for --smoke-test)",
                    _from("tuning.champion", "only_first")),
    "never": Choice("never; nothing is registered", _from("tuning.champion", "only_first")),
}  # fmt: skip
REGISTERS_NOTHING = "never"
# --format: make(serving model, example input, the registered model's folder, target folder) writes
# the model file(s) into target.
FORMATS = {
    "torch_export": Choice(f"a torch.export ExportedProgram with a dynamic batch ({EXPORT_FILES['torch_export']}; "
                           "torch.export.load(path).module() runs it, no ovatune needed)",
                           _from("tuning.export", "write_torch_export")),
    "torchscript": Choice(f"a traced TorchScript module ({EXPORT_FILES['torchscript']}; deprecated: PyTorch is "
                          "retiring TorchScript, use torch_export)", _from("tuning.export", "write_torchscript")),
    "onnx": Choice(f"an ONNX graph with a dynamic batch ({EXPORT_FILES['onnx']})", _from("tuning.export", "write_onnx")),
    "mlflow": Choice(f"the registered MLflow pyfunc model ({EXPORT_FILES['mlflow']}/)",
                     _from("tuning.export", "write_mlflow")),
}  # fmt: skip


def described(choices: dict[str, Any]) -> str:
    """``name: meaning; ...`` for an option's help (``choices``: name -> a ``Choice``, or anything
    with a ``meaning``, as ``SELECTION_METRICS``' rows)."""
    return "; ".join(f"{name}: {choice.meaning}" for name, choice in choices.items())
