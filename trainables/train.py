"""The one Ray Tune function trainable: ``train_classifier(config)`` trains one trial.

The config is flat: the search space's fixed settings, the sampled hyperparameters (``lr``,
``adam_beta1``, ``adam_eps``, ``l2``, ...), ``loss`` (a key of ``trainables.losses.LOSSES``),
``seed`` and ``threads``. Every epoch it reports the training loss and the validation accuracy, NLL
and ECE with ``tune.report``, with a checkpoint, and it resumes from ``tune.get_checkpoint()``.

A non-finite training loss ends the trial early with ``diverged = 1`` and a ``stop_reason``: with the
paper's ranges (lr up to 1 with Adam) divergence is an expected outcome of a trial, not an error, so
the trial finishes normally and the sweep goes on; promotion never picks it.

``train_loop`` is one trial's training, whoever runs it: the Tune trial itself, or each worker of a
multi-worker trial (``workers_per_trial`` > 1; ``trainables.distributed`` runs it under Ray Train's
``TorchTrainer`` with DDP, and ``batch_size`` is then the global batch). ``fit_epoch`` and
``predict_probabilities`` hold the training and inference loops; the benchmarks run them without
Ray to measure what the service costs on top.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from evaluation.metrics import NonFiniteProbabilities, classification_metrics
from trainables.checksums import TamperedFile, verify_checksums, write_checksums
from trainables.data import Dataset, Split, input_batches, load_dataset
from trainables.data.augment import AUGMENTATIONS
from trainables.losses import DistanceHead, Loss, get_loss
from trainables.models import Classifier, build_classifier
from trainables.trial_config import OPTIMIZERS, setting, upgraded

if TYPE_CHECKING:
    from trainables.data.imagenet import ImageFiles

CHECKPOINT_STATE = "state.pt"  # model, optimizer and schedule state; loads with weights_only=True
CHECKPOINT_META = "meta.json"  # what it takes to rebuild the model without Ray: config, classes
EVAL_BATCH_SIZE = 1024

# Datasets cached per worker process: with reuse_actors=True one process runs many trials.
_DATASETS: dict[tuple, Dataset] = {}


def cached_dataset(config: dict[str, Any]) -> Dataset:
    """The trial's dataset, loaded once per process."""
    key = (config["dataset"], config.get("data_dir"), int(setting(config, "data_seed")))
    if key not in _DATASETS:
        _DATASETS[key] = load_dataset(*key)
    return _DATASETS[key]


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """The model's parameters as optimizer groups: the class centres of a distance head undecayed.

    Weight decay pulls every parameter towards 0, which for a centre w_k means towards the origin of
    the embedding space, not towards a simpler function: the reference code's distance layer
    (``DisMax``) has no regularizer either. Everything else (the body, a dense head) is decayed.
    """
    centres = {id(p) for m in model.modules() if isinstance(m, DistanceHead) for p in m.parameters()}
    decayed = [p for p in model.parameters() if id(p) not in centres]
    undecayed = [p for p in model.parameters() if id(p) in centres]
    groups = [{"params": decayed, "weight_decay": weight_decay}]
    if undecayed:
        groups.append({"params": undecayed, "weight_decay": 0.0})
    return groups


def build_optimizer(model: torch.nn.Module, config: dict[str, Any]) -> torch.optim.Optimizer:
    """``sgd``, ``sgd_nesterov`` or ``adam`` over the model's :func:`parameter_groups`, from flat config keys.

    ``l2`` is the paper's L2 factor on the loss, l2·Σw²; its gradient 2·l2·w is ``weight_decay=2·l2``,
    applied to every parameter except the class centres of a distance head.
    """
    name, lr = config["optimizer"], float(config["lr"])
    params = parameter_groups(model, 2.0 * float(setting(config, "l2")))
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(config.get("momentum", 0.0)))
    if name == "sgd_nesterov":
        return torch.optim.SGD(params, lr=lr, momentum=float(config.get("momentum", 0.9)), nesterov=True)
    if name == "adam":
        betas = (float(setting(config, "adam_beta1")), float(setting(config, "adam_beta2")))
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=float(setting(config, "adam_eps")))
    raise ValueError(f"unknown optimizer {name!r}; choose from: {', '.join(OPTIMIZERS)}")


def lr_factor(epoch: int, config: dict[str, Any]) -> float:
    """Learning-rate multiplier for a 0-based epoch: linear warm-up, then ×gamma at each milestone."""
    warmup = int(setting(config, "warmup_epochs"))
    if epoch < warmup:
        return (epoch + 1) / warmup
    passed = sum(epoch >= m for m in setting(config, "lr_milestones"))
    return float(setting(config, "lr_gamma")) ** passed


def set_epoch_lr(optimizer: torch.optim.Optimizer, config: dict[str, Any], epoch: int) -> None:
    """Set the learning rate of a 0-based epoch. The schedule is a pure function of the epoch, so a
    resumed trial needs no scheduler state."""
    for group in optimizer.param_groups:
        group["lr"] = float(config["lr"]) * lr_factor(epoch, config)


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
def predict_probabilities(model: Classifier, x: torch.Tensor | ImageFiles, workers: int = 0) -> np.ndarray:
    """The loss's evaluation probabilities for inputs x (a tensor or files), (N, K) float64."""
    model.eval()
    device = next(model.parameters()).device
    chunks = [model.probabilities(chunk.to(device)) for chunk in input_batches(x, EVAL_BATCH_SIZE, workers)]
    return torch.cat(chunks).double().cpu().numpy()


def save_checkpoint(directory: Path, model, optimizer, epoch: int, config: dict, data: Dataset, metrics: dict) -> None:
    """Write the trial state after ``epoch`` (1-based) epochs, with that epoch's metrics."""
    torch.save(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch},
        directory / CHECKPOINT_STATE,
    )
    meta = {
        "config": {k: v for k, v in config.items() if _is_json(v)},
        "tokenizer": data.tokenizer,  # text: the tokenizer that made the inputs (tokenizers JSON), else None
        "input_shape": list(data.input_shape),
        "class_names": data.class_names,
        "epoch": epoch,
        "metrics": metrics,
    }
    (directory / CHECKPOINT_META).write_text(json.dumps(meta, indent=1))
    write_checksums(directory, [CHECKPOINT_STATE, CHECKPOINT_META])  # checked before anything loads them


def verify_checkpoint(directory: str | Path) -> None:
    """Check a checkpoint's files against the SHA-256 recorded when it was saved.

    Raises:
        TamperedFile: names the changed or missing file (a checkpoint without checksums is not intact).
    """
    verify_checksums(directory, "The checkpoint is corrupted: resume from an earlier one or train the trial again.")


def load_classifier(directory: str | Path) -> tuple[Classifier, dict[str, Any]]:
    """Rebuild the trained model from a checkpoint directory (verified first); returns (model, meta).

    Raises:
        TamperedFile: the checkpoint's files are not those it was saved with.
    """
    directory = Path(directory)
    verify_checkpoint(directory)
    meta = json.loads((directory / CHECKPOINT_META).read_text())
    model = build_classifier(tuple(meta["input_shape"]), len(meta["class_names"]), meta["config"])
    state = torch.load(directory / CHECKPOINT_STATE, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    return model.eval(), meta


def resume_state(checkpoint: Any, checkpoint_type: Any, device: torch.device) -> tuple:
    """The newest intact state to resume from: ``checkpoint`` (Ray's latest) if its files match their
    recorded SHA-256, else the newest intact earlier checkpoint of the same trial (Ray keeps a few).

    Returns:
        (state, meta, the checkpoint they came from, what was wrong with the newer ones); state,
        meta and checkpoint are None when no checkpoint is intact (the trial starts over).
    """
    problems = []
    for candidate in [checkpoint, *_earlier_checkpoints(checkpoint, checkpoint_type)]:
        with candidate.as_directory() as directory:
            try:
                verify_checkpoint(directory)
                state = torch.load(Path(directory) / CHECKPOINT_STATE, map_location=device, weights_only=True)
                meta = json.loads((Path(directory) / CHECKPOINT_META).read_text())
            except TamperedFile as error:
                problems.append(error.problem)
                continue
            except Exception as error:  # noqa: BLE001 - intact by its hashes but unreadable: same outcome
                problems.append(f"{directory} cannot be read ({type(error).__name__}: {error})")
                continue
        return state, meta, candidate, problems
    return None, None, None, problems


def _earlier_checkpoints(checkpoint: Any, checkpoint_type: Any) -> list:
    """The trial's other checkpoints older than ``checkpoint``, newest first (local storage only:
    elsewhere Ray's latest is the only one this process can see)."""
    path = Path(checkpoint.path)
    if not path.is_dir() or not path.name.startswith("checkpoint_"):
        return []
    older = sorted((p for p in path.parent.glob("checkpoint_*") if p.is_dir() and p.name < path.name), reverse=True)
    return [checkpoint_type.from_directory(str(p)) for p in older]


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except TypeError:
        return False


def train_classifier(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: train one configuration, report every epoch.

    With ``workers_per_trial`` > 1 the trial is a Ray Train ``TorchTrainer`` of that many workers
    (:func:`trainables.distributed.train_data_parallel`), each running :func:`train_loop`.
    """
    from ray import tune  # Ray only where it is needed: the rest of this module runs without it

    # Ray logs every checkpoint at INFO from inside the trial: one line per epoch per trial is noise.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    if int(setting(config, "workers_per_trial")) > 1:
        from trainables.distributed import train_data_parallel

        return train_data_parallel(config)
    # Ray sets CUDA_VISIBLE_DEVICES to the trial's GPUs: a trial given none sees none.
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train_loop(config, tune, tune.get_checkpoint(), device, ray_placement())


def ray_placement() -> dict[str, str]:
    """Where Ray placed this process: its node and the GPUs it was assigned (reported with the
    metrics, so the trial's MLflow run says which node and GPUs trained it)."""
    import ray

    context = ray.get_runtime_context()
    return {"node_id": context.get_node_id(), "gpu_ids": ",".join(str(i) for i in ray.get_gpu_ids())}


def train_loop(
    config: dict[str, Any], ray_api: Any, checkpoint: Any, device: torch.device, placement: dict[str, str]
) -> None:
    """Train one configuration from ``checkpoint`` (or from scratch), reporting every epoch.

    Args:
        config: the trial's flat config.
        ray_api: whose ``report`` and ``Checkpoint`` to use: the ``ray.tune`` module in a one-process
            trial, ``ray.train`` in each worker of a multi-worker trial. There, rank 0 reports the
            metrics and writes the checkpoint; every worker reports (Ray Train's reports are a barrier).
        checkpoint: a Ray checkpoint to resume from, or None.
        device: where this process trains.
        placement: where Ray placed it (:func:`ray_placement`), reported with rank 0's metrics.
    """
    config = upgraded(config)  # a trial of a sweep started before a config key was renamed
    # Threads per trial are set deliberately: on small models, more threads than cores is far slower.
    torch.set_num_threads(int(setting(config, "threads")))
    data = cached_dataset(config)
    config = {**config, **data.model_settings}  # e.g. a text model's vocabulary size, saved in checkpoints
    rank, world = data_parallel_rank()
    train, val = data.train.to(device), data.val.to(device)
    loss = get_loss(config["loss"])
    torch.manual_seed(int(config["seed"]))  # the same initial weights on every worker
    model = build_classifier(data.input_shape, data.num_classes, config).to(device)
    if device.type == "cuda" and len(data.input_shape) == 3:
        model = model.to(memory_format=torch.channels_last)  # images: the layout cuDNN is fastest in
    optimizer = build_optimizer(model, config)
    augment = AUGMENTATIONS[data.augmentation] if data.augmentation else None

    epochs = int(config["epochs"])
    start_epoch = 0
    fallback: dict[str, str] = {}  # reported with the next epoch when a corrupted checkpoint was passed over
    if checkpoint is not None:
        state, meta, checkpoint, problems = resume_state(checkpoint, ray_api.Checkpoint, device)
        if problems:
            resumed = f"resuming from epoch {state['epoch']}" if state else "training again from scratch"
            fallback = {"checkpoint_fallback": "; ".join(problems) + f"; {resumed}"}
            if rank == 0:
                print(f"ovatune: warning: {fallback['checkpoint_fallback']}", file=sys.stderr, flush=True)
        if state is not None and int(state["epoch"]) >= epochs:
            # Finished before the driver stopped, but not yet recorded as finished: report the
            # final result again instead of training anything.
            ray_api.report({**meta["metrics"], **fallback}, checkpoint=checkpoint if rank == 0 else None)
            return
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            start_epoch = int(state["epoch"])

    step_model: torch.nn.Module = model
    if world > 1:
        if config.get("sync_batchnorm"):  # batch statistics over the global batch, not each shard
            step_model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(step_model)
        ids = [device.index] if device.type == "cuda" else None
        step_model = torch.nn.parallel.DistributedDataParallel(step_model, device_ids=ids)
    if config.get("compile"):
        step_model = torch.compile(step_model)  # optional: worth it on GPUs

    checkpoint_every = int(setting(config, "checkpoint_every"))
    for epoch in range(start_epoch, epochs):
        set_epoch_lr(optimizer, config, epoch)
        started = time.perf_counter()
        train_loss, train_accuracy = fit_epoch(step_model, loss, optimizer, train, config, epoch, augment)
        fit_s = time.perf_counter() - started
        metrics: dict[str, Any] = {"epoch": epoch + 1}
        stop_reason = None if math.isfinite(train_loss) else f"non-finite training loss ({train_loss})"
        if rank == 0 and stop_reason is None:  # rank 0 validates (the whole validation split) and reports
            val_probs = predict_probabilities(model, val.x, loader_workers(config))
            try:
                val_metrics = classification_metrics(val_probs, data.val.y.numpy())
            except NonFiniteProbabilities as error:  # the weights overflowed although the loss did not
                stop_reason, val_metrics = f"non-finite validation probabilities ({error})", {}
            metrics.update(
                train_loss=train_loss,
                train_accuracy=train_accuracy,
                val_accuracy=val_metrics.get("accuracy"),
                val_nll=val_metrics.get("nll"),
                val_ece=val_metrics.get("ece"),
                learning_rate=optimizer.param_groups[0]["lr"],
                fit_time_s=fit_s,
                diverged=0,
                **placement,
            )
        if world > 1:  # every worker stops together (the loss is already the same on all of them)
            stopped = torch.tensor([stop_reason is not None], device=device)
            torch.distributed.broadcast(stopped, src=0)
            if stopped.item() and stop_reason is None:
                stop_reason = "rank 0 found non-finite validation probabilities"
        if stop_reason is not None:
            # Undefined validation metrics are reported as NaN: never mistaken for a good trial.
            nan = float("nan")
            ray_api.report({"epoch": epoch + 1, "train_loss": train_loss, "val_accuracy": nan, "val_nll": nan,
                            "val_ece": nan, "diverged": 1, "stop_reason": f"{stop_reason} in epoch {epoch + 1}"})  # fmt: skip
            return
        if (epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs:
            with tempfile.TemporaryDirectory() as directory:
                if rank == 0:
                    save_checkpoint(Path(directory), model, optimizer, epoch + 1, config, data, metrics)
                saved = ray_api.Checkpoint.from_directory(directory) if rank == 0 else None
                ray_api.report({**metrics, **fallback}, checkpoint=saved)
        else:
            ray_api.report({**metrics, **fallback})
        fallback = {}
