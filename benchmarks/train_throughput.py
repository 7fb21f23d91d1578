"""Training images/s of a ResNet-20 CIFAR-10 trial run by ovatune vs the same model in a bare PyTorch loop.

- ovatune: ``ovatune sweep cifar10`` on CIFAR-10 files written here (random pixels in the real
  pickle format), one softmax trial through Ray Tune + Optuna + MLflow with the space's settings
  (Adam, batch 512 unless ``--batch-size``, on-device augmentation). Its throughput is
  steps × batch / ``fit_time_s``, the seconds of training steps the trainable reports every epoch;
  the first epoch is warm-up and not counted.
- bare: a plain loop in this process on the same thread count: the same ResNet-20 with a linear
  softmax head, ``torch.optim.Adam``, cross-entropy, random index batches, the same batched
  ``pad_crop_flip`` augmentation. Nothing else.

- plain Ray Tune: the bare loop inside a minimal Ray Tune function trainable, for reference: it
  separates what Ray Tune's trial process costs from what ovatune's code adds.

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


def plain_tune_rate(images: np.ndarray, labels: np.ndarray, threads: int, batch: int, steps: int, epochs: int) -> float:
    """Images/s of ``bare_rate`` run inside a minimal Ray Tune function trainable (no ovatune code):
    what Ray Tune's trial process costs by itself on this machine."""
    import ray
    from ray import tune

    def trainable(config):
        torch.set_num_threads(threads)
        x_all = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        tune.report({"rate": bare_rate(x_all, torch.from_numpy(labels), batch, steps, epochs)})

    ray.init(address="local", num_cpus=os.cpu_count(), log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run = tune.RunConfig(storage_path=tmp, verbose=0)
            results = tune.Tuner(tune.with_resources(trainable, {"cpu": threads}), run_config=run).fit()
            return float(results[0].metrics["rate"])
    finally:
        ray.shutdown()


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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5000, 32, 32, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(10), 500)

    # This machine's speed drifts by 10-20% between runs (shared hosts): the bare loop and the trial
    # alternate --repeats times and the medians are compared.
    x_all = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    bares, ours_all = [], []
    for _ in range(args.repeats):
        bares.append(bare_rate(x_all, torch.from_numpy(labels), args.batch_size, args.steps, args.epochs))
        with tempfile.TemporaryDirectory() as tmp:
            write_cifar("cifar10", tmp, images, labels, train=True)
            write_cifar("cifar10", tmp, images[:1000], labels[:1000], train=False)
            home = Path(tmp) / "home"
            ours_all.append(ovatune_rate(Path(tmp), home, args.threads, args.batch_size, args.steps, args.epochs))
    bares.append(bare_rate(x_all, torch.from_numpy(labels), args.batch_size, args.steps, args.epochs))
    bare, ours = float(np.median(bares)), float(np.median(ours_all))
    tune_only = plain_tune_rate(images, labels, args.threads, args.batch_size, args.steps, args.epochs)
    print("$ python " + " ".join(sys.argv))
    print(f"machine: {os.cpu_count()} cores, {args.threads} threads, torch {torch.__version__}, ResNet-20, "
          f"batch {args.batch_size}, {args.steps} steps x {args.epochs - 1} timed epochs")  # fmt: skip
    print(f"ovatune trial : {ours:8.1f} images/s (median of {', '.join(f'{v:.1f}' for v in ours_all)})")
    print(f"bare loop     : {bare:8.1f} images/s (median of {', '.join(f'{v:.1f}' for v in bares)})")
    print(f"plain Ray Tune: {tune_only:8.1f} images/s (the bare loop inside a minimal Tune function trainable)")
    print(f"ratio         : {ours / bare:8.3f}  (goal >= 0.95); vs plain Ray Tune: {ours / tune_only:.3f}")


if __name__ == "__main__":
    main()
