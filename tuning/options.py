"""The choices of the sweep, promotion and export commands, each with what it means: light to import, so the
CLI's parser reads them (choices and ``--help``) and ``tuning.sweep`` / ``tuning.export`` act on them.
"""

# --smoke-test: the whole path (sweep, promotion, evaluation) in seconds.
SMOKE_TEST = {"trials": 1, "epochs": 2}
SCHEDULERS = {
    "fifo": "runs every trial to the end (the default)",
    "asha": "stops poor trials early, within each loss (Ray Tune's ASHA)",
}
SAMPLERS = {
    "random": "Optuna's RandomSampler: random search, as the paper (the default)",
    "tpe": "Optuna's TPESampler",
}
# --promote: when a sweep's best version of a loss becomes the champion.
POLICIES = {
    "better": "only if it beats the current champion on the selection metric (ties keep the current one)",
    "always": "always: the newest sweep's best replaces the champion",
    "first": "only if the loss has no champion yet (the default for --smoke-test)",
    "never": "never; nothing is registered",
}
FORMATS = {
    "torchscript": "a traced TorchScript module (model.pt)",
    "onnx": "an ONNX graph with a dynamic batch (model.onnx)",
    "mlflow": "the registered MLflow pyfunc model (mlflow_model/)",
}


def described(choices: dict[str, str]) -> str:
    """``name: meaning; ...`` for an option's help."""
    return "; ".join(f"{name}: {meaning}" for name, meaning in choices.items())
