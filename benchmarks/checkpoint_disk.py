"""What a sweep's checkpoints keep on disk, from one real checkpoint's measured size.

Writes one trial checkpoint's state file as ``trainables.checkpoint.save_checkpoint`` writes it
(the model's weights and the optimizer's state after one step, so SGD's momentum buffers exist)
for a space's model, and multiplies by what a sweep of that space keeps (``tuning.retention``):
KEEP_CHECKPOINTS per running trial and one per finished trial, against three per trial finished
or not, as ovatune kept before.

    PYTHONPATH=. python benchmarks/checkpoint_disk.py [--space cifar100]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from search_spaces import get_space
from trainables.checkpoint import CHECKPOINT_STATE
from trainables.losses import get_loss
from trainables.models import build_classifier
from trainables.optim import build_optimizer
from tuning.retention import KEEP_CHECKPOINTS

SHAPES = {"cifar10": ((3, 32, 32), 10), "cifar100": ((3, 32, 32), 100)}


def checkpoint_bytes(space_name: str) -> int:
    space = get_space(space_name)
    shape, classes = SHAPES[space_name]
    config = {**space.fixed, "loss": "softmax", "seed": 0, **{k: r.low for k, r in space.ranges.items()}}
    model = build_classifier(shape, classes, config)
    optimizer = build_optimizer(model, config)
    x, y = torch.rand(2, *shape), torch.tensor([0, 1])
    get_loss("softmax").training_loss(model(x), y).backward()
    optimizer.step()  # the momentum buffers: part of every checkpoint after the first step
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / CHECKPOINT_STATE
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 1}, path)
        return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="cifar100", choices=sorted(SHAPES))
    args = parser.parse_args()
    space = get_space(args.space)
    size = checkpoint_bytes(args.space)
    trials = 4 * space.trials
    gb = 1e9
    print(f"$ PYTHONPATH=. python benchmarks/checkpoint_disk.py --space {args.space}")
    print(
        f"{args.space}: {space.fixed['model']}, one checkpoint {size / 1e6:.0f} MB; {trials} trials (4 losses x {space.trials})"
    )
    print(f"  finished sweep, 1 per trial (now):              {trials * size / gb:6.1f} GB")
    print(
        f"  all trials running, {KEEP_CHECKPOINTS} per trial (now, between checkpoints): {trials * KEEP_CHECKPOINTS * size / gb:6.1f} GB"
    )
    print(f"  before: 3 per trial, finished or not:           {trials * 3 * size / gb:6.1f} GB")


if __name__ == "__main__":
    main()
