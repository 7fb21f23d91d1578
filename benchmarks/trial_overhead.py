"""What the service costs on top of training: one trial through ovatune vs the same bare PyTorch loop.

Runs ``ovatune sweep toy2d --losses softmax --trials 1 --epochs E`` (Ray Tune + Optuna + MLflow +
the space's checkpoints), and the same config (the sweep's first seeded sample) as a bare script: a
fresh Python process that imports torch, makes the data and runs the same ``fit_epoch`` and
validation code with no Ray, no MLflow and no checkpoints, once before and once after the sweep.
One thread each. It prints:

- trial overhead ratio = trial wall time in the service / bare script wall time (goal: <= 1.10),
  the trial's wall time being its MLflow run's start to end as the driver saw it;
- start-up cost = from launching ``ovatune`` to the first trial starting (Ray start, MLflow store,
  search set-up).

    python benchmarks/trial_overhead.py [--epochs 40]     # 40 toy epochs ≈ 30 s on one core
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from evaluation.metrics import classification_metrics
from search_spaces import get_space
from trainables.loop import fit_epoch, predict_probabilities
from trainables.losses import get_loss
from trainables.models import build_classifier
from trainables.optim import build_optimizer, set_epoch_lr
from trainables.train import cached_dataset


def bare_loop(config: dict) -> float:
    """Train ``config`` in a plain loop, validating every epoch like the trainable; returns the
    seconds spent in the training steps alone."""
    torch.set_num_threads(1)
    data = cached_dataset(config)
    torch.manual_seed(int(config["seed"]))
    model = build_classifier(data.input_shape, data.num_classes, config)
    optimizer = build_optimizer(model, config)
    steps_s = 0.0
    for epoch in range(int(config["epochs"])):
        set_epoch_lr(optimizer, config, epoch)
        started = time.perf_counter()
        fit_epoch(model, get_loss(config["loss"]), optimizer, data.train, config, epoch)
        steps_s += time.perf_counter() - started
        classification_metrics(predict_probabilities(model, data.val.x), data.val.y.numpy())
    return steps_s


def bare_script(config: dict) -> tuple[float, float]:
    """(wall seconds, training-step seconds) of a fresh process running ``bare_loop(config)``."""
    started = time.perf_counter()
    # Ray gives a 1-CPU trial OMP_NUM_THREADS=1; the bare script gets the same thread settings.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, __file__, "--bare", json.dumps(config)], check=True, env=env, capture_output=True, text=True
    )
    return time.perf_counter() - started, float(done.stdout.strip().splitlines()[-1])


def _parse(value: str):
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return None if value == "None" else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=40, help="toy2d epochs of 1000 SGD steps (default 40 ≈ 30 s)")
    parser.add_argument("--bare", help=argparse.SUPPRESS)  # internal: run the bare loop on this JSON config
    args = parser.parse_args()
    if args.bare:
        print(bare_loop(json.loads(args.bare)))
        return

    # Imported here, not at the top: the bare script (this file with --bare) must not pay for them.
    from mlflow.tracking import MlflowClient

    from tuning.sweep import PerLossSearch

    # The trial's config is known in advance: the sweep's first softmax sample for seed 0.
    space = get_space("toy2d")
    sampled = PerLossSearch(space, ["softmax"], 1, seed=0).suggest("benchmark")
    config = {**space.fixed, **sampled, "epochs": args.epochs, "seed": 0, "data_seed": 0}
    before_s = bare_script(config)  # on a quiet machine, before Ray starts

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
    logged = {k: _parse(v) for k, v in trial.data.params.items()}
    assert logged["lr"] == config["lr"] and logged["loss"] == "softmax", "the service trained another config"
    epoch_times = client.get_metric_history(trial.info.run_id, "time_this_iter_s")
    inside_s = sum(m.value for m in epoch_times)
    fit_s = sum(m.value for m in client.get_metric_history(trial.info.run_id, "fit_time_s"))
    first_result_s = (min(m.timestamp for m in epoch_times) - trial.info.start_time) / 1000 - epoch_times[0].value
    after_s = bare_script(config)  # before and after the service: their mean is the baseline
    bare_runs = [before_s[0], after_s[0]]
    bare_s = sum(bare_runs) / 2
    bare_steps_s = (before_s[1] + after_s[1]) / 2
    # This VM's speed drifts by up to ±20% between identical runs, so also compare what is not
    # training: (trial − its training steps) against (bare script − its training steps).
    robust = 1 + ((trial_s - fit_s) - (bare_s - bare_steps_s)) / bare_s

    print(f"command: python benchmarks/trial_overhead.py --epochs {args.epochs}")
    print(f"machine: {os.cpu_count()} cores, 1 torch thread per trial and for the bare loop; torch {torch.__version__}")
    print(
        f"trial config: toy2d softmax lr={config['lr']:.4g}, {args.epochs} epochs x 1000 steps, checkpoint every {config['checkpoint_every']} epochs"
    )
    print(f"bare PyTorch script:           {bare_s:7.2f} s  (mean of {bare_runs[0]:.2f} and {bare_runs[1]:.2f})")
    print(f"trial through the service:     {trial_s:7.2f} s  (Ray Tune + MLflow + checkpoints)")
    print(
        f"  of which inside the trainable (sum of epoch times): {inside_s:.2f} s, of which training steps {fit_s:.2f} s; trial start to first epoch: {first_result_s:.2f} s"
    )
    print(f"bare script's training steps:  {bare_steps_s:7.2f} s")
    print(f"overhead ratio, steps evened:  {robust:7.3f}  (1 + (service - bare) time outside training steps / bare)")
    print(f"trial overhead ratio:          {trial_s / bare_s:7.3f}  (goal <= 1.10)")
    print(f"start-up before first trial:   {(trial.info.start_time / 1000) - launched:7.2f} s")
    print(f"whole `ovatune sweep` command: {total:7.2f} s  (includes promotion and shutdown)")


if __name__ == "__main__":
    main()
