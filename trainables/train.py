"""The one Ray Tune function trainable: ``train_classifier(config)`` trains one trial.

The config is flat: the search space's fixed settings, the sampled hyperparameters (``lr``,
``adam_beta1``, ``adam_eps``, ``l2``, ...), ``loss`` (a key of ``trainables.losses.LOSSES``),
``seed`` and ``threads``. Every epoch it reports the training loss and the validation metrics of
``trainables.trial_metrics.SELECTION_METRICS`` (accuracy, NLL, ECE, Brier) with ``tune.report``,
with a checkpoint, and it resumes from ``tune.get_checkpoint()``.

A non-finite training loss ends the trial early with ``diverged = 1`` and a ``stop_reason``: with the
paper's ranges (lr up to 1 with Adam) divergence is an expected outcome of a trial, not an error, so
the trial finishes normally and the sweep goes on; promotion never picks it.

``train_loop`` is one trial's training, whoever runs it: the Tune trial itself, or each worker of a
multi-worker trial (``workers_per_trial`` > 1; ``trainables.distributed`` runs it under Ray Train's
``TorchTrainer`` with DDP, and ``batch_size`` is then the global batch). Its parts each have a
module: ``trainables.optim`` (optimizer, schedule), ``trainables.loop`` (the epoch and inference
loops) and ``trainables.checkpoint`` (the checkpoint format, verified resume).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from evaluation.metrics import NonFiniteProbabilities, classification_metrics
from trainables import verbose
from trainables.checkpoint import resume_state, save_checkpoint
from trainables.data import Dataset, Split, load_dataset
from trainables.data.augment import AUGMENTATIONS
from trainables.data.provenance import split_provenance
from trainables.loop import data_parallel_rank, fit_epoch, loader_workers, predict_probabilities
from trainables.losses import get_loss
from trainables.models import build_classifier
from trainables.optim import build_optimizer, set_epoch_lr
from trainables.pack_format import PACK_KEY
from trainables.system_metrics import SystemMeter
from trainables.trial_config import setting, upgraded
from trainables.trial_metrics import REPLAY_KEY, SELECTION_METRICS

# Ray Tune logs "Restored on <ip> from checkpoint: Checkpoint(...)" at INFO in a trial's process when
# it starts the trial again (its node was lost, say), before the trainable runs: the driver says so
# in one line instead (tuning.progress.TrialRetries). --verbose keeps it.
if not verbose():
    logging.getLogger("ray.tune.trainable.trainable").setLevel(logging.WARNING)

# Datasets cached per worker process: with reuse_actors=True one process runs many trials.
_DATASETS: dict[tuple, Dataset] = {}
_PROVENANCE: dict[tuple, str] = {}


def _dataset_key(config: dict[str, Any]) -> tuple:
    return config["dataset"], config.get("data_dir"), int(setting(config, "data_seed"))


def cached_dataset(config: dict[str, Any]) -> Dataset:
    """The trial's dataset, loaded once per process."""
    key = _dataset_key(config)
    if key not in _DATASETS:
        _DATASETS[key] = load_dataset(*key)
    return _DATASETS[key]


def validation_split(data: Dataset, config: dict[str, Any]) -> Split:
    """What a trial validates on every epoch: the validation split, or ``val_examples`` of its
    examples evenly spaced over it (the held-out split is in the dataset's own order, which for
    CIFAR is random). A cheaper, noisier selection metric: a sweep of tiny, fast trials would
    otherwise spend most of its time validating."""
    limit = setting(config, "val_examples")
    if limit is None or int(limit) >= len(data.val):
        return data.val
    index = torch.linspace(0, len(data.val) - 1, int(limit)).round().long()  # (val_examples,)
    return data.val.subset(index)


def training_provenance(config: dict[str, Any]) -> str:
    """The provenance (JSON) of the trial's training and validation examples, computed once per
    process: reported with the trial's first result, it becomes the MLflow run's dataset inputs."""
    key = (*_dataset_key(config), setting(config, "val_examples"))
    if key not in _PROVENANCE:
        data = cached_dataset(config)
        _PROVENANCE[key] = json.dumps([split_provenance(data, "train").to_dict(),
                                       split_provenance(data, "validation", validation_split(data, config)).to_dict()])  # fmt: skip
    return _PROVENANCE[key]


def train_classifier(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: train one configuration, report every epoch.

    With ``workers_per_trial`` > 1 the trial is a Ray Train ``TorchTrainer`` of that many workers
    (:func:`trainables.distributed.train_data_parallel`), each running :func:`train_loop`. A config
    with ``pack`` is K trials trained together (:func:`trainables.pack_trial.train_pack_loop`).
    """
    from ray import tune  # Ray only where it is needed: the rest of this module runs without it

    # Ray logs every checkpoint at INFO from inside the trial: one line per epoch per trial is noise
    # (--verbose keeps it).
    if not verbose():
        logging.getLogger("ray.train").setLevel(logging.WARNING)
        logging.getLogger("ray.tune").setLevel(logging.WARNING)
    if int(setting(config, "workers_per_trial")) > 1:
        from trainables.distributed import train_data_parallel

        return train_data_parallel(config)
    # Ray sets CUDA_VISIBLE_DEVICES to the trial's GPUs: a trial given none sees none.
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if PACK_KEY in config:  # K trials trained as one vectorised model (trainables.pack_trial)
        from trainables.pack_stops import stopped_members
        from trainables.pack_trial import train_pack_loop

        context = tune.get_context()
        stopped = stopped_members(context.get_experiment_name(), context.get_trial_id())
        return train_pack_loop(config, tune, tune.get_checkpoint(), device, ray_placement(), stopped)
    train_loop(config, tune, tune.get_checkpoint(), device, ray_placement())


def validate(model: torch.nn.Module, x: Any, labels: torch.Tensor, config: dict[str, Any]) -> tuple[dict, str | None]:
    """(every ``SELECTION_METRICS`` value of ``model`` on the validation split, why the trial must stop
    or None): the weights may overflow although the training loss did not."""
    return validation_metrics(predict_probabilities(model, x, loader_workers(config)), labels)


def validation_metrics(probabilities: Any, labels: torch.Tensor) -> tuple[dict, str | None]:
    """:func:`validate` from a model's validation probabilities (N, K)."""
    try:
        measured = classification_metrics(probabilities, labels.numpy())
    except NonFiniteProbabilities as error:
        return dict.fromkeys(SELECTION_METRICS), f"non-finite validation probabilities ({error})"
    return {name: measured.get(m.measure) for name, m in SELECTION_METRICS.items()}, None


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
    validation_examples = validation_split(data, config)
    train, val = data.train.to(device), validation_examples.to(device)
    loss = get_loss(config["loss"])
    torch.manual_seed(int(config["seed"]))  # the same initial weights on every worker
    model = build_classifier(data.input_shape, data.num_classes, config).to(device)
    if device.type == "cuda" and len(data.input_shape) == 3:
        model = model.to(memory_format=torch.channels_last)  # images: the layout cuDNN is fastest in
    optimizer = build_optimizer(model, config)
    augment = AUGMENTATIONS[data.augmentation] if data.augmentation else None

    epochs = int(config["epochs"])
    start_epoch = 0
    # Reported with this process's first result only: the data it trains on, and (below) a corrupted
    # checkpoint that resuming passed over.
    once: dict[str, str] = {"data_provenance": training_provenance(config)} if rank == 0 else {}
    history: list[dict[str, float]] = []  # every epoch's numeric metrics, kept in each checkpoint
    if checkpoint is not None:
        state, meta, checkpoint, problems = resume_state(checkpoint, ray_api.Checkpoint, device)
        if problems:
            resumed = f"resuming from epoch {state['epoch']}" if state else "training again from scratch"
            once["checkpoint_fallback"] = "; ".join(problems) + f"; {resumed}"
            if rank == 0:
                print(f"ovatune: warning: {once['checkpoint_fallback']}", file=sys.stderr, flush=True)
        if state is not None and rank == 0:
            # The epochs before this checkpoint, for the driver to log those it could not (REPLAY_KEY).
            history = meta.get("history", [])
            once[REPLAY_KEY] = json.dumps(history)
        if state is not None and int(state["epoch"]) >= epochs:
            # Finished before the driver stopped, but not yet recorded as finished: report the
            # final result again instead of training anything.
            ray_api.report({**meta["metrics"], **once}, checkpoint=checkpoint if rank == 0 else None)
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
    meter = SystemMeter(device)  # what this process used, reported with each epoch's metrics
    for epoch in range(start_epoch, epochs):
        set_epoch_lr(optimizer, config, epoch)
        started = time.perf_counter()
        train_loss, train_accuracy = fit_epoch(step_model, loss, optimizer, train, config, epoch, augment)
        fit_s = time.perf_counter() - started
        metrics: dict[str, Any] = {"epoch": epoch + 1}
        stop_reason = None if math.isfinite(train_loss) else f"non-finite training loss ({train_loss})"
        if rank == 0 and stop_reason is None:  # rank 0 validates (its validation examples) and reports
            validation, stop_reason = validate(model, val.x, validation_examples.y, config)
            metrics.update(
                train_loss=train_loss,
                train_accuracy=train_accuracy,
                **validation,
                learning_rate=optimizer.param_groups[0]["lr"],
                fit_time_s=fit_s,
                diverged=0,
                **placement,
                **meter.read(),
            )
            history.append({k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)})
        if world > 1:  # every worker stops together (the loss is already the same on all of them)
            stopped = torch.tensor([stop_reason is not None], device=device)
            torch.distributed.broadcast(stopped, src=0)
            if stopped.item() and stop_reason is None:
                stop_reason = "rank 0 found non-finite validation probabilities"
        if stop_reason is not None:
            # Undefined validation metrics are reported as NaN: never mistaken for a good trial.
            undefined = dict.fromkeys(SELECTION_METRICS, float("nan"))
            ray_api.report({"epoch": epoch + 1, "train_loss": train_loss, **undefined, "diverged": 1,
                            "stop_reason": f"{stop_reason} in epoch {epoch + 1}", **once})  # fmt: skip
            return
        if (epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs:
            with tempfile.TemporaryDirectory() as directory:
                if rank == 0:
                    save_checkpoint(Path(directory), model, optimizer, epoch + 1, config, data, metrics, history)
                saved = ray_api.Checkpoint.from_directory(directory) if rank == 0 else None
                ray_api.report({**metrics, **once}, checkpoint=saved)
        else:
            ray_api.report({**metrics, **once})
        once = {}
