"""What the service costs on top of training: one trial through ovatune vs the same bare PyTorch loop.

Runs ``ovatune sweep toy2d --losses softmax --trials 1 --epochs E`` (Ray Tune + Optuna + MLflow +
a checkpoint every epoch), reads the trial's sampled config back from MLflow, then trains exactly
that config in a bare loop (the same ``fit_epoch`` and validation code, no Ray, no MLflow, no
checkpoints), one thread each, and prints:

- trial overhead ratio = trial wall time in the service / bare loop wall time (goal: <= 1.10),
  the trial's wall time being its MLflow run's start to end;
- start-up cost = from launching ``ovatune`` to the first trial starting (Ray start, MLflow store,
  search set-up).

    python benchmarks/trial_overhead.py [--epochs 40]     # 40 toy epochs ≈ 30 s on one core
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient

from evaluation.metrics import classification_metrics
from trainables.methods import get_method
from trainables.models import build_classifier
from trainables.train import build_optimizer, cached_dataset, fit_epoch, lr_factor, predict_probabilities


def bare_loop(config: dict) -> float:
    """Seconds to train ``config`` in a plain loop, validating every epoch like the trainable."""
    torch.set_num_threads(1)
    data = cached_dataset(config)
    started = time.perf_counter()
    torch.manual_seed(int(config["seed"]))
    model = build_classifier(data.input_shape, data.num_classes, config)
    optimizer = build_optimizer(model.parameters(), config)
    for epoch in range(int(config["epochs"])):
        for group in optimizer.param_groups:
            group["lr"] = float(config["lr"]) * lr_factor(epoch, config)
        fit_epoch(model, get_method(config["method"]), optimizer, data.train, config, epoch)
        classification_metrics(predict_probabilities(model, data.val.x), data.val.y.numpy())
    return time.perf_counter() - started


def _parse(value: str):
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return None if value == "None" else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=40, help="toy2d epochs of 1000 SGD steps (default 40 ≈ 30 s)")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="ovatune-bench-"))
    ovatune = str(Path(sys.executable).parent / "ovatune")
    command = [
        ovatune,
        "sweep",
        "toy2d",
        "--losses",
        "softmax",
        "--trials",
        "1",
        "--epochs",
        str(args.epochs),
        "--home",
        str(home),
    ]
    launched = time.time()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    total = time.time() - launched

    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name("toy2d").experiment_id
    (trial,) = client.search_runs([experiment_id], filter_string="tags.`ovatune.kind` = 'trial'")
    trial_s = (trial.info.end_time - trial.info.start_time) / 1000
    config = {k: _parse(v) for k, v in trial.data.params.items()}
    bare_s = bare_loop(config)

    print(f"command: python benchmarks/trial_overhead.py --epochs {args.epochs}")
    print(f"machine: {torch.get_num_threads()} torch threads available, 1 used per trial; torch {torch.__version__}")
    print(
        f"trial config: toy2d softmax lr={config['lr']:.4g}, {args.epochs} epochs x 1000 steps, checkpoint every epoch"
    )
    print(f"bare PyTorch loop:             {bare_s:7.2f} s")
    print(f"trial through the service:     {trial_s:7.2f} s  (Ray Tune + MLflow + checkpoints)")
    print(f"trial overhead ratio:          {trial_s / bare_s:7.3f}  (goal <= 1.10)")
    print(f"start-up before first trial:   {(trial.info.start_time / 1000) - launched:7.2f} s")
    print(f"whole `ovatune sweep` command: {total:7.2f} s  (includes promotion and shutdown)")


if __name__ == "__main__":
    main()
