"""The choices of the sweep and export commands, each with what it means: light to import, so the
CLI's parser reads them (choices and ``--help``) and ``tuning.sweep`` / ``tuning.export`` act on them.
"""

SCHEDULERS = {
    "fifo": "runs every trial to the end (the default)",
    "asha": "stops poor trials early, within each loss (Ray Tune's ASHA)",
}
SAMPLERS = {
    "random": "Optuna's RandomSampler: random search, as the paper (the default)",
    "tpe": "Optuna's TPESampler",
}
FORMATS = {
    "torchscript": "a traced TorchScript module (model.pt)",
    "onnx": "an ONNX graph with a dynamic batch (model.onnx)",
    "mlflow": "the registered MLflow pyfunc model (mlflow_model/)",
}


def described(choices: dict[str, str]) -> str:
    """``name: meaning; ...`` for an option's help."""
    return "; ".join(f"{name}: {meaning}" for name, meaning in choices.items())
