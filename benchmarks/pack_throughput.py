"""Training examples/s per member of a pack (``trainables.pack``) against trials trained one by one.

For each model and pack size K: K members with their own seeds and learning rates, trained by
``fit_pack_epoch`` for a few steps after a warm-up; against the same K trained one after another by
the trial's own ``fit_epoch``. Figures are training examples/s (all K trials' examples over their
time; "per member" is the pack's divided by K), the best of ``--repeats``, on ``--threads`` torch
threads (a trial's default is 1).

- resnet20: ResNet-20 (width 16) on 32×32 uint8 images, on-device pad-crop-flip, SGD with Nesterov
  momentum, batch ``--batch-size`` (the cifar10 space's 128 by default);
- mlp: the digits space's 2×128 MLP, Adam, batch 64, on 8×8 inputs.

Why the pack pays: a small model's step is mostly fixed costs (Python, dispatch, one small kernel
per layer); the pack pays them once for K members. ``vmap``'s batching rules turn the stacked
layers into one batched kernel each (``bmm`` for linear layers; a grouped convolution, as HFTA
writes by hand, for convolutions; batch norm over the members' channels as groups).

    PYTHONPATH=. python benchmarks/pack_throughput.py [--models resnet20,mlp] [--sizes 1,4,8] [--steps 4]
"""

from __future__ import annotations

import argparse
import time

import torch

from trainables.data import Split
from trainables.data.augment import pad_crop_flip
from trainables.loop import fit_epoch
from trainables.losses import get_loss
from trainables.models import build_classifier
from trainables.optim import build_optimizer, set_epoch_lr
from trainables.pack import Pack, fit_pack_epoch

SETUPS = {
    "resnet20": (
        {"model": "resnet20", "optimizer": "sgd_nesterov", "momentum": 0.9, "loss": "softmax"},
        (3, 32, 32),
        10,
        pad_crop_flip,
    ),  # fmt: skip
    "mlp": ({"model": "mlp", "hidden": [128, 128], "optimizer": "adam", "loss": "softmax"}, (64,), 10, None),
}


def data(shape: tuple[int, ...], classes: int, n: int) -> Split:
    generator = torch.Generator().manual_seed(0)
    if len(shape) == 3:
        x = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=generator)
    else:
        x = torch.rand((n, *shape), generator=generator) * 16
    return Split(x, torch.randint(0, classes, (n,), generator=generator))


def configs(model: str, k: int, batch: int, steps: int) -> list[dict]:
    base = SETUPS[model][0] | {"dataset": "synthetic", "batch_size": batch, "steps_per_epoch": steps, "epochs": 2}
    return [base | {"seed": 100 + i, "lr": 0.01 * (1 + i / k)} for i in range(k)]


def alone_rate(model: str, k: int, batch: int, steps: int, train: Split) -> float:
    """Examples/s of K trials trained one after another (fit_epoch): all their examples over all their time."""
    _, shape, classes, augment = SETUPS[model]
    elapsed = 0.0
    for config in configs(model, k, batch, steps):
        torch.manual_seed(config["seed"])
        net = build_classifier(shape, classes, config)
        optimizer = build_optimizer(net, config)
        set_epoch_lr(optimizer, config, 0)
        fit_epoch(net, get_loss(config["loss"]), optimizer, train, config, 0, augment)  # warm-up
        started = time.perf_counter()
        fit_epoch(net, get_loss(config["loss"]), optimizer, train, config, 1, augment)
        elapsed += time.perf_counter() - started
    return k * steps * batch / elapsed


def pack_rate(model: str, k: int, batch: int, steps: int, train: Split) -> float:
    """Examples/s of one pack of K: all its members' examples over its time."""
    _, shape, classes, augment = SETUPS[model]
    members = configs(model, k, batch, steps)
    nets = []
    for config in members:
        torch.manual_seed(config["seed"])
        nets.append(build_classifier(shape, classes, config))
    pack = Pack(nets, members)
    loss = get_loss(members[0]["loss"])
    pack.optimizer.set_epoch_lr(0)
    fit_pack_epoch(pack, loss, train, 0, augment)  # warm-up
    started = time.perf_counter()
    fit_pack_epoch(pack, loss, train, 1, augment)
    return k * steps * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet20,mlp")
    parser.add_argument("--sizes", default="1,4,8")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, help="default: 128 (resnet20), 64 (mlp)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); training examples/s, best of {args.repeats}")
    print(f"{'model':9} {'K':>3} {'K one by one':>13} {'pack of K':>10} {'per member':>11} {'pack / one by one':>18}")
    for model in args.models.split(","):
        batch = args.batch_size or (128 if model == "resnet20" else 64)
        _, shape, classes, _ = SETUPS[model]
        train = data(shape, classes, 4 * batch)
        for k in (int(s) for s in args.sizes.split(",")):
            alone = max(alone_rate(model, k, batch, args.steps, train) for _ in range(args.repeats))
            packed = max(pack_rate(model, k, batch, args.steps, train) for _ in range(args.repeats))
            print(f"{model:9} {k:>3} {alone:>13.0f} {packed:>10.0f} {packed / k:>11.0f} {packed / alone:>17.2f}x",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
