"""The training and inference loops: one epoch of optimizer steps, and batched probabilities.

``fit_epoch`` is what every trial runs per epoch (one process or each worker of a multi-worker
trial, on the CPU or CUDA); ``predict_probabilities`` is validation's and promotion's inference.
Neither knows Ray: the benchmarks run them bare to measure what the service costs on top.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from trainables.data import Split, input_batches
from trainables.losses import Loss
from trainables.models import Classifier
from trainables.trial_config import setting

if TYPE_CHECKING:
    from trainables.data.imagenet import ImageFiles

EVAL_BATCH_SIZE = 1024  # examples per forward pass when predicting


def loader_workers(config: dict[str, Any]) -> int:
    """DataLoader processes that decode file-based data (ImageNet): ``loader_workers``, else the trial's CPUs."""
    return int(config.get("loader_workers", setting(config, "threads")))


def batch_order(n: int, batch_size: int, steps: int | None, generator: torch.Generator) -> list[torch.Tensor]:
    """Index batches for one epoch: one shuffled pass, or ``steps`` batches across reshuffled passes."""
    if steps is None:
        return list(torch.randperm(n, generator=generator).split(batch_size))
    passes = math.ceil(steps * batch_size / n)
    stream = torch.cat([torch.randperm(n, generator=generator) for _ in range(passes)])
    return list(stream[: steps * batch_size].split(batch_size))


def fit_epoch(
    model: Classifier,
    loss: Loss,
    optimizer: torch.optim.Optimizer,
    train: Split,
    config: dict[str, Any],
    epoch: int,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
) -> tuple[float, float]:
    """Train one epoch (0-based index ``epoch``); returns (mean training loss, training accuracy).

    Each optimizer step takes ``batch_size`` examples. With ``micro_batch_size`` smaller than that,
    the step's gradient is accumulated over micro-batches (each loss weighted by its share of the
    batch), so a batch that does not fit on the device still gives the same step; batch-norm
    statistics are then those of each micro-batch.

    In a multi-worker trial (a ``torch.distributed`` process group; ``model`` wrapped in
    ``DistributedDataParallel``) ``batch_size`` is the global batch: each worker takes its slice of
    every batch and DDP all-reduces the gradients, so a step is the one-process step on the same
    batch. The returned loss and accuracy are the whole batch's on every worker.

    In-memory inputs are gathered, and augmented by ``augment`` when given, on the data's device.
    Files (:class:`~trainables.data.imagenet.ImageFiles`) are decoded and augmented by
    ``loader_workers`` DataLoader processes, seeded by the trial's seed and the epoch, and copied to
    the model's device. On CUDA the forward pass runs in bfloat16 autocast. The loss is summed on the
    device and read once per epoch (no per-step synchronisation); a non-finite value comes back as
    such for the caller to act on.
    """
    seed = int(config["seed"]) * 100_003 + epoch
    generator = torch.Generator().manual_seed(seed)
    batch_size = int(config["batch_size"])
    micro_batch_size = int(config.get("micro_batch_size") or batch_size)
    steps = batch_order(len(train), batch_size, config.get("steps_per_epoch"), generator)  # global batches
    rank, world = data_parallel_rank()
    if world > 1:
        # Every worker drew the same global batches (same seed) and takes its own slice of each. A
        # last batch too small to give every worker an example is dropped (DDP needs all of them).
        steps = [step for step in steps if len(step) >= world]
    global_sizes = [len(step) for step in steps]
    steps = [step.tensor_split(world)[rank] for step in steps]  # this worker's share of each batch
    micro_batches = [chunk for step in steps for chunk in step.split(micro_batch_size)]
    device = next(model.parameters()).device
    if isinstance(train.x, torch.Tensor):
        on = train.x.device  # gathered where the data lives, then moved (a no-op when that is the model's device)
        source = ((train.x[i].to(device), train.y[i].to(device)) for i in (c.to(on) for c in micro_batches))
    else:
        workers = loader_workers(config)
        loader = train.x.loader([c.tolist() for c in micro_batches], workers, seed, pin_memory=device.type == "cuda")
        source = ((x.to(device, non_blocking=True), y.to(device, non_blocking=True)) for x, y in loader)
    model.train()
    augment_generator = torch.Generator(device=device).manual_seed(seed * world + rank)
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    for step, global_size in zip(steps, global_sizes):
        optimizer.zero_grad(set_to_none=True)
        chunks = math.ceil(len(step) / micro_batch_size)
        for chunk in range(chunks):
            x, y = next(source)  # (b, ...), (b,)
            if augment is not None:
                x = augment(x, augment_generator)
            # DDP all-reduces gradients in backward: only once per step, after the last micro-batch
            last = chunk == chunks - 1
            with contextlib.nullcontext() if last or world == 1 else model.no_sync():
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    logits = model(x)  # (b, K)
                # the micro-batch's weight in the global batch's mean loss; ×world because DDP
                # averages the workers' gradients instead of summing them
                share = len(y) / global_size * world
                batch_loss = loss.training_loss(logits.float(), y) * share
                batch_loss.backward()
            total_loss += batch_loss.detach()
            correct += (logits.detach().argmax(dim=1) == y).sum()
        optimizer.step()
    if world > 1:  # every worker returns the whole batch's figures (and so agrees on divergence)
        torch.distributed.all_reduce(total_loss)
        torch.distributed.all_reduce(correct)
    return float(total_loss) / world / len(steps), float(correct) / sum(global_sizes)


def data_parallel_rank() -> tuple[int, int]:
    """(rank, world size) of this process in a multi-worker trial's process group; (0, 1) outside one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


@torch.no_grad()
def predict_probabilities(model: torch.nn.Module, x: torch.Tensor | ImageFiles, workers: int = 0) -> np.ndarray:
    """The loss's evaluation probabilities for inputs x (a tensor or files), (N, K) float64: a
    ``Classifier``'s ``probabilities``, or the output of a module whose forward returns them (a
    ``ProbabilityModel``, as evaluation measures). The one inference loop of training, promotion and
    evaluation; ``workers`` DataLoader processes decode files."""
    model.eval()
    device = next(model.parameters()).device
    probabilities = getattr(model, "probabilities", model)
    chunks = [probabilities(chunk.to(device)) for chunk in input_batches(x, EVAL_BATCH_SIZE, workers)]
    return torch.cat(chunks).double().cpu().numpy()
