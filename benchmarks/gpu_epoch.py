"""One ResNet-20 CIFAR-10 epoch on a GPU through the trainable's own loop, and what the paper's sweep costs.

Runs ``trainables.loop.fit_epoch`` (the code every trial runs) with the ``cifar10`` space's settings:
ResNet-20 v1, Adam, batch 512, 45 000 training images (CIFAR-10's 50 000 less the 10% validation
split) held on the GPU as uint8, pad-crop-flip augmentation on the GPU, channels_last, bf16
autocast; then the per-epoch validation pass on 5 000 images, as a trial does. The pixels are random
(the speed does not depend on them), so no dataset is needed.

It prints the epoch time (training steps alone, and with validation), images/s, and the projected
wall time of the paper's CIFAR-10 sweep (4 losses × 100 trials × 200 epochs) on one GPU, one trial
at a time. With ``--concurrent K`` it also runs K such trials at once in separate processes, as
``--gpus-per-trial 1/K`` packs them on one GPU, and projects the sweep from their summed throughput.
With ``--packs 4,8,16,32`` it also trains packs of K trials (``trainables.pack``, as ``--pack K``
trains them: ``fit_pack_epoch`` and one validation pass for all members), and with ``--concurrent``
too, that many such packs at once (packs × processes).

    python benchmarks/gpu_epoch.py [--epochs 3] [--compile] [--concurrent 4] [--packs 4,8,16,32]

Issue 34's table on a GPU (about 6 minutes on an H100):

    PYTHONPATH=. python benchmarks/gpu_epoch.py --epochs 3 --concurrent 4 --packs 4,8,16,32
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

from search_spaces import get_space
from trainables.data import Split
from trainables.data.augment import pad_crop_flip
from trainables.loop import fit_epoch, predict_probabilities
from trainables.losses import get_loss
from trainables.models import build_classifier
from trainables.optim import build_optimizer, set_epoch_lr
from trainables.pack import Pack, fit_pack_epoch

TRAIN, VAL = 45_000, 5_000
SWEEP_TRIALS = 4 * 100  # losses × trials per loss (paper Appendix E.2)


def _data(device: torch.device, train_images: int) -> tuple[Split, Split]:
    generator = torch.Generator(device=device).manual_seed(0)
    x = torch.randint(0, 256, (train_images + VAL, 3, 32, 32), dtype=torch.uint8, device=device, generator=generator)
    y = torch.randint(0, 10, (train_images + VAL,), device=device, generator=generator)
    return Split(x[:train_images], y[:train_images]), Split(x[train_images:], y[train_images:])


def _config(seed: int = 0, lr: float = 1e-3) -> dict:
    return {**get_space("cifar10").fixed, "loss": "softmax", "lr": lr, "seed": seed, "adam_beta1": 0.9,
            "adam_eps": 1e-7}  # fmt: skip


def measure(epochs: int, compile_model: bool, device: str, train_images: int = TRAIN) -> dict:
    """Train ``epochs`` epochs (the first is warm-up); returns per-epoch seconds of the others."""
    config = _config()
    dev = torch.device(device)
    train, val = _data(dev, train_images)
    torch.manual_seed(0)
    model = build_classifier((3, 32, 32), 10, config).to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config)
    step_model = torch.compile(model) if compile_model else model
    fit_s, val_s = [], []
    for epoch in range(epochs):
        set_epoch_lr(optimizer, config, epoch)
        started = time.perf_counter()
        fit_epoch(
            step_model, get_loss("softmax"), optimizer, train, config, epoch, pad_crop_flip
        )  # reads the loss: synchronised
        fitted = time.perf_counter()
        predict_probabilities(model, val.x)  # copies to the host: synchronised
        if epoch > 0:
            fit_s.append(fitted - started)
            val_s.append(time.perf_counter() - fitted)
    fit, validate = sum(fit_s) / len(fit_s), sum(val_s) / len(val_s)
    scale = TRAIN / train_images  # a full CIFAR-10 epoch, when fewer images were timed (trying it on a CPU)
    return {"fit_s": fit * scale, "epoch_s": fit * scale + validate, "images_per_s": train_images / fit}


def measure_pack(epochs: int, members: int, device: str, train_images: int = TRAIN) -> dict:
    """As :func:`measure`, for a pack of ``members`` trials (their own seeds and learning rates);
    images/s counts every member's images."""
    dev = torch.device(device)
    train, val = _data(dev, train_images)
    configs = [_config(seed=k, lr=1e-3 * (1 + k / members)) for k in range(members)]
    models = []
    for config in configs:
        torch.manual_seed(config["seed"])
        models.append(build_classifier((3, 32, 32), 10, config).to(dev))
    pack, loss = Pack(models, configs), get_loss("softmax")
    fit_s, val_s = [], []
    for epoch in range(epochs):
        pack.optimizer.set_epoch_lr(epoch)
        started = time.perf_counter()
        fit_pack_epoch(pack, loss, train, epoch, pad_crop_flip)  # reads the losses: synchronised
        fitted = time.perf_counter()
        pack.probabilities(val.x, loss).cpu()  # one validation pass for all members
        if epoch > 0:
            fit_s.append(fitted - started)
            val_s.append(time.perf_counter() - fitted)
    fit, validate = sum(fit_s) / len(fit_s), sum(val_s) / len(val_s)
    scale = TRAIN / train_images
    return {"fit_s": fit * scale, "epoch_s": fit * scale + validate, "images_per_s": members * train_images / fit}


def projected_hours(epoch_s: float, concurrent: int = 1) -> float:
    epochs = get_space("cifar10").fixed["epochs"]
    return SWEEP_TRIALS * epochs * epoch_s / concurrent / 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measurement; the first is warm-up")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (the trials' compile=true)")
    parser.add_argument("--concurrent", type=int, default=0, help="also run K trials at once on the GPU")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--train-images", type=int, default=TRAIN, help="fewer to try the script on a CPU")
    parser.add_argument("--packs", default="", help="also packs of these sizes, e.g. 4,8,16,32")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # one child of --concurrent
    parser.add_argument("--pack", type=int, default=1, help=argparse.SUPPRESS)  # the child's pack size
    args = parser.parse_args()
    if args.json:
        if args.pack > 1:
            print(json.dumps(measure_pack(args.epochs, args.pack, args.device, args.train_images)))
        else:
            print(json.dumps(measure(args.epochs, args.compile, args.device, args.train_images)))
        return
    result = measure(args.epochs, args.compile, args.device, args.train_images)
    name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    print("$ python " + " ".join(sys.argv))
    print(f"device: {name}, torch {torch.__version__}, compile={args.compile}")
    print(f"one trial : epoch {result['fit_s']:.2f} s training + {result['epoch_s'] - result['fit_s']:.2f} s "
          f"validation; {result['images_per_s']:,.0f} images/s (goal on one H100: epoch <= 3 s)")  # fmt: skip
    print(f"            paper's CIFAR-10 sweep ({SWEEP_TRIALS} trials x 200 epochs), one trial at a time: "
          f"{projected_hours(result['epoch_s']):.1f} h per GPU")  # fmt: skip
    command = [sys.executable, __file__, "--epochs", str(args.epochs), "--device", args.device, "--json",
               "--train-images", str(args.train_images)]  # fmt: skip
    if args.concurrent > 1:
        results = _at_once(command + (["--compile"] if args.compile else []), args.concurrent)
        epoch_s = max(r["epoch_s"] for r in results)  # each finishes an epoch in this long
        total = sum(r["images_per_s"] for r in results)
        print(f"{args.concurrent} at once : epoch {epoch_s:.2f} s each (with validation); {total:,.0f} images/s "
              f"together; the sweep with --gpus-per-trial {1 / args.concurrent:.2g}: "
              f"{projected_hours(epoch_s, args.concurrent):.1f} h per GPU")  # fmt: skip
    for members in [int(k) for k in args.packs.split(",") if k]:
        for processes in sorted({1, max(1, args.concurrent)}):
            results = _at_once(command + ["--pack", str(members)], processes)
            epoch_s = max(r["epoch_s"] for r in results)
            total = sum(r["images_per_s"] for r in results)
            print(f"pack of {members:2} x {processes} process(es): epoch {epoch_s:.2f} s (with validation); "
                  f"{total:,.0f} images/s together; the sweep with --pack {members}"
                  f"{f' --gpus-per-trial {1 / processes:.2g}' if processes > 1 else ''}: "
                  f"{projected_hours(epoch_s, members * processes):.1f} h per GPU", flush=True)  # fmt: skip


def _at_once(command: list[str], processes: int) -> list[dict]:
    """Run ``processes`` copies of ``command`` (this script's --json child) at once; their results."""
    children = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    return [json.loads(child.communicate()[0].strip().splitlines()[-1]) for child in children]


if __name__ == "__main__":
    main()
