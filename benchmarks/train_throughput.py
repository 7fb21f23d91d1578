"""Training images/s of a ResNet-20 CIFAR-10 trial run by ovatune vs the same model in a bare PyTorch loop.

- ovatune: ``ovatune sweep cifar10`` on CIFAR-10 files written here (random pixels in the real
  pickle format), one softmax trial through Ray Tune + Optuna + MLflow with the space's settings
  (Adam, batch 512 unless ``--batch-size``, on-device augmentation). Its throughput is
  steps × batch / ``fit_time_s``, the seconds of training steps the trainable reports every epoch;
  the first epoch is warm-up and not counted.
- bare: a plain loop in a fresh Python process on the same thread count: the same ResNet-20 with a
  linear softmax head, ``torch.optim.Adam``, cross-entropy, random index batches, the same batched
  ``pad_crop_flip`` augmentation. Nothing else. Measured twice:
  - as a user would run it (the system's malloc), the baseline of the goal;
  - with the environment ovatune gives its Ray workers (``tuning.cluster.worker_environment``:
    jemalloc that keeps freed memory): what is left is what Ray and ovatune's own code cost.

Goal: ovatune ≥ 0.95× bare.

    python benchmarks/train_throughput.py [--threads 1] [--steps 6] [--epochs 3] [--batch-size 512] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from trainables.data.augment import pad_crop_flip
from trainables.data.cifar import write_cifar
from trainables.models.resnet import ResNetV1


def bare_rate(x_all: torch.Tensor, y_all: torch.Tensor, batch: int, steps: int, epochs: int) -> float:
    """Images/s of a bare loop, epochs after the first."""
    torch.manual_seed(0)
    body = ResNetV1(3, 20, 16)
    model = nn.Sequential(body, nn.Linear(body.embedding_dim, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    timed = 0.0
    for epoch in range(epochs):
        started = time.perf_counter()
        for _ in range(steps):
            index = torch.randint(0, len(x_all), (batch,), generator=generator)
            x = pad_crop_flip(x_all[index], generator)
            loss = nn.functional.cross_entropy(model(x), y_all[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if epoch > 0:
            timed += time.perf_counter() - started
    return (epochs - 1) * steps * batch / timed


def bare_rate_in_process(env: dict[str, str], threads: int, batch: int, steps: int, epochs: int) -> float:
    """``bare_rate`` in a fresh Python process with ``env`` added to this one's environment."""
    command = [sys.executable, __file__, "--bare", "--threads", str(threads), "--batch-size", str(batch),
               "--steps", str(steps), "--epochs", str(epochs)]  # fmt: skip
    done = subprocess.run(command, check=True, env={**os.environ, **env}, capture_output=True, text=True)
    return float(done.stdout.split()[-1])


def ovatune_rate(data_dir: Path, home: Path, threads: int, batch: int, steps: int, epochs: int) -> float:
    """Images/s of one ovatune trial, from the fit_time_s it logged for epochs after the first."""
    ovatune = str(Path(sys.executable).parent / "ovatune")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    # fmt: off
    subprocess.run(
        [ovatune, "sweep", "cifar10", "--data-dir", str(data_dir), "--home", str(home), "--losses", "softmax",
         "--trials", "1", "--epochs", str(epochs), "--cpus-per-trial", str(threads),
         "--set", f"batch_size={batch}", "--set", f"steps_per_epoch={steps}"],
        check=True, env=env, stdout=subprocess.DEVNULL,
    )
    # fmt: on
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cifar10")
    (trial,) = client.search_runs([experiment.experiment_id], "tags.`ovatune.kind` = 'trial'")
    history = sorted(client.get_metric_history(trial.info.run_id, "fit_time_s"), key=lambda m: m.step)
    timed = sum(m.value for m in history[1:])
    return (len(history) - 1) * steps * batch / timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (= the trial's CPUs); 1 leaves the second core of a 2-core machine to "
        "Ray's and MLflow's own processes, which would otherwise take time from the trial",
    )
    parser.add_argument("--steps", type=int, default=6, help="training steps per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs; the first is warm-up")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="alternating bare / trial measurements")
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)  # one bare loop, print its rate
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5000, 32, 32, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(10), 500)
    if args.bare:
        x_all = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        print(bare_rate(x_all, torch.from_numpy(labels), args.batch_size, args.steps, args.epochs))
        return

    from tuning.cluster import worker_environment

    workers = worker_environment(None)
    loop = (args.threads, args.batch_size, args.steps, args.epochs)
    # This machine's speed drifts by 10-20% between runs (shared hosts): the three measurements
    # alternate --repeats times and the medians are compared.
    bares, bares_env, ours_all = [], [], []
    for _ in range(args.repeats):
        bares.append(bare_rate_in_process({}, *loop))
        bares_env.append(bare_rate_in_process(workers, *loop))
        with tempfile.TemporaryDirectory() as tmp:
            write_cifar("cifar10", tmp, images, labels, train=True)
            write_cifar("cifar10", tmp, images[:1000], labels[:1000], train=False)
            home = Path(tmp) / "home"
            ours_all.append(ovatune_rate(Path(tmp), home, *loop))
    bare, bare_env, ours = (float(np.median(v)) for v in (bares, bares_env, ours_all))

    def runs(values: list[float]) -> str:
        return "median of " + ", ".join(f"{v:.1f}" for v in values)

    print("$ python " + " ".join(sys.argv))
    print(f"machine: {os.cpu_count()} cores, {args.threads} threads, torch {torch.__version__}, ResNet-20, "
          f"batch {args.batch_size}, {args.steps} steps x {args.epochs - 1} timed epochs")  # fmt: skip
    print(f"worker environment: {workers or 'none (not Linux, or LD_PRELOAD/MALLOC_CONF already set)'}")
    print(f"ovatune trial          : {ours:7.1f} images/s ({runs(ours_all)})")
    print(f"bare loop              : {bare:7.1f} images/s ({runs(bares)})")
    print(f"bare loop, worker env. : {bare_env:7.1f} images/s ({runs(bares_env)})")
    print(f"ratio to the bare loop : {ours / bare:7.3f}  (goal >= 0.95)")
    print(f"ratio, same environment: {ours / bare_env:7.3f}  (what Ray Tune and ovatune's own code cost)")


if __name__ == "__main__":
    main()
