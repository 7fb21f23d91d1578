"""Training images/s of one ResNet-20 CIFAR-10 trial on 1 and on N Ray Train (DDP, gloo) workers.

Both run ``ovatune sweep cifar10`` (one softmax trial through Ray Tune + Ray Train + MLflow) on
CIFAR-10 files written here (random pixels in the real pickle format), at the same global batch
(``--batch-size``, split across the workers): one process on one core, one process on N cores
(N torch threads), and N workers of one core each. Throughput is
steps × global batch / ``fit_time_s`` (rank 0's seconds of training steps, which include waiting
for the gradient all-reduce); the first epoch is warm-up and not counted. The two alternate
``--repeats`` times and the medians are compared (this machine's speed drifts between runs).

On a 2-core machine little or no gain is expected: two workers share the cores with Ray's own
processes, and every step all-reduces ResNet-20's 0.27 M gradients through gloo.

    python benchmarks/data_parallel.py [--workers 2] [--steps 6] [--epochs 3] [--batch-size 512] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from trainables.data.cifar import write_cifar


def trial_rate(data_dir: Path, home: Path, workers: int, cpus: int, batch: int, steps: int, epochs: int) -> float:
    """Images/s of one ovatune trial of ``workers`` workers of ``cpus`` CPUs (= torch threads) each,
    from the fit_time_s it logged."""
    ovatune = str(Path(sys.executable).parent / "ovatune")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    # fmt: off
    subprocess.run(
        [ovatune, "sweep", "cifar10", "--data-dir", str(data_dir), "--home", str(home), "--losses", "softmax",
         "--trials", "1", "--epochs", str(epochs), "--cpus-per-trial", str(cpus), "--workers-per-trial", str(workers),
         "--set", f"batch_size={batch}", "--set", f"steps_per_epoch={steps}"],
        check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    # fmt: on
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cifar10")
    (trial,) = client.search_runs([experiment.experiment_id], "tags.`ovatune.kind` = 'trial'")
    history = sorted(client.get_metric_history(trial.info.run_id, "fit_time_s"), key=lambda m: m.step)
    return (len(history) - 1) * steps * batch / sum(m.value for m in history[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="workers of the data-parallel trial")
    parser.add_argument("--steps", type=int, default=6, help="training steps per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs; the first is warm-up")
    parser.add_argument("--batch-size", type=int, default=512, help="the global batch")
    parser.add_argument("--repeats", type=int, default=2, help="alternating measurements of the three shapes")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5000, 32, 32, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(10), 500)
    # (workers, CPUs each): one process on one core, one process on all N cores, N processes of one
    shapes = [(1, 1), (1, args.workers), (args.workers, 1)]
    rates: dict[tuple[int, int], list[float]] = {shape: [] for shape in shapes}
    with tempfile.TemporaryDirectory() as tmp:
        write_cifar("cifar10", tmp, images, labels, train=True)
        write_cifar("cifar10", tmp, images[:1000], labels[:1000], train=False)
        for repeat in range(args.repeats):
            for workers, cpus in shapes:
                home = Path(tmp) / f"home-{workers}-{cpus}-{repeat}"
                rate = trial_rate(Path(tmp), home, workers, cpus, args.batch_size, args.steps, args.epochs)
                rates[(workers, cpus)].append(rate)
    median = {shape: float(np.median(values)) for shape, values in rates.items()}
    print("$ python " + " ".join(sys.argv))
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, ResNet-20, global batch {args.batch_size}, "
          f"{args.steps} steps x {args.epochs - 1} timed epochs")  # fmt: skip
    for (workers, cpus), values in rates.items():
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(f"{workers} worker(s) x {cpus} thread(s): {median[(workers, cpus)]:7.1f} images/s (median of {runs})")
    base = median[(1, 1)]
    print(f"{args.workers} workers vs 1 worker on 1 thread : {median[(args.workers, 1)] / base:.2f}x")
    threads = median[(1, args.workers)]
    print(f"{args.workers} workers vs 1 worker on {args.workers} threads: {median[(args.workers, 1)] / threads:.2f}x")


if __name__ == "__main__":
    main()
