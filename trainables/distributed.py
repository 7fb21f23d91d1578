"""A trial on several workers: a Ray Train ``TorchTrainer`` run inside the trial's Tune function.

This is Ray Train V2's way of tuning distributed training: the Tune trial is a small driver that
launches a ``TorchTrainer`` of ``workers_per_trial`` workers, each running
:func:`trainables.train.train_loop` under DDP (gloo on the CPU, NCCL on CUDA). The trial stays what
it is everywhere else — one config, one MLflow child run, one Tune checkpoint per epoch, promotion,
evaluation and export unchanged — because every report of rank 0 is relayed to Tune as the trial's
own: :func:`relay_to_tune`'s callback runs in Ray Train's controller after each report and hands the metrics
and the path of the checkpoint Train just persisted to this function, which reports them to Tune
(Tune copies the checkpoint into the trial's directory, so ``num_to_keep`` and resume work as for a
one-process trial).

Faults: a worker that dies is restarted by Ray Train (``max_failures``) from the run's latest
checkpoint, on every worker; a trial that Tune restarts (its node died, the driver was
interrupted and resumed) starts a new Train run from Tune's checkpoint of the trial. Either way no
epoch is trained twice after a checkpoint.

Resources: the Tune trial itself asks for no CPU (it only waits); each worker asks for
``cpus_per_worker`` and ``gpus_per_worker``, which is what an autoscaler sees and launches nodes for.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

import torch

from trainables import verbose

_DONE = "done"  # the relay's last message: the Train run ended (its error, if any, travels with it)


def relay_to_tune(queue) -> Any:
    """A Ray Train callback (it runs in Train's controller) that puts each report's rank-0 metrics and
    the checkpoint Train persisted on ``queue``, for the Tune trial to report."""
    from ray.train import UserCallback

    class RelayToTune(UserCallback):
        def after_report(self, run_context, metrics, checkpoint) -> None:
            # metrics[i] is worker i's report; rank 0's carries the trial's metrics
            queue.put((metrics[0], checkpoint))  # with its file system: a bucket's path is not a local one

    return RelayToTune()


def quiet_train_worker_reports() -> None:
    """Drop the INFO line each Ray Train worker logs per report.

    That line ("Reporting training result 3: TrainingReport(...)", with the whole metrics dict) is
    one line per epoch per worker on the user's terminal. Its logger is named after its module's
    file, so ``LoggingConfig``'s level (the ``ray.train`` loggers) misses it; warnings and errors
    still show, and ``--verbose`` keeps it.
    """
    if verbose():
        return
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:  # another Ray: its own logging, left as it is
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)


def worker_loop(config: dict[str, Any]) -> None:
    """What each Ray Train worker runs: the trial's training loop on this worker's device."""
    import ray.train
    import ray.train.torch

    from trainables.train import ray_placement, train_loop

    quiet_train_worker_reports()
    # After a worker failure Train hands every worker the run's latest checkpoint; on a fresh run,
    # the Tune trial's checkpoint (if it is resuming) came in the config.
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None and config.get("resume_from"):
        path, filesystem = config["resume_from"]  # Tune's checkpoint, in a folder or a bucket
        checkpoint = ray.train.Checkpoint(path, filesystem)
    device = ray.train.torch.get_device() if torch.cuda.is_available() else torch.device("cpu")
    config = {k: v for k, v in config.items() if k != "resume_from"}
    train_loop(config, ray.train, checkpoint, device, ray_placement())


def train_data_parallel(config: dict[str, Any]) -> None:
    """Tune function trainable for a multi-worker trial: run a ``TorchTrainer`` and relay its reports."""
    from ray import tune
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.util.queue import Queue

    workers = int(config["workers_per_trial"])
    gpus = float(config.get("gpus_per_worker", 0))
    resume = tune.get_checkpoint()
    reports = Queue(actor_options={"num_cpus": 0})
    # A new Train run per Tune (re)start, in the trial's own storage: resuming is Tune's checkpoint's
    # job, so Train must not restore an older run of its own. Its checkpoints are deleted at the end.
    storage = tune.get_context().get_storage()
    run_name = f"ray-train-{uuid.uuid4().hex[:8]}"
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config={**config, "resume_from": (resume.path, resume.filesystem) if resume is not None else None},
        torch_config=TorchConfig(backend="nccl" if gpus > 0 else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=workers,
            use_gpu=gpus > 0,
            resources_per_worker={"CPU": float(config.get("cpus_per_worker", 1)), "GPU": gpus},
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage.trial_fs_path,
            storage_filesystem=storage.storage_filesystem,
            failure_config=FailureConfig(max_failures=2),  # a dead worker: restart the group from the checkpoint
            checkpoint_config=CheckpointConfig(num_to_keep=2),  # the latest stays while Tune copies it
            callbacks=[relay_to_tune(reports)],
            # a line per report and checkpoint only under --verbose
            logging_config=LoggingConfig(log_level="INFO" if verbose() else "WARNING"),
        ),
    )
    failure: list[BaseException] = []

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as error:  # noqa: BLE001 - re-raised in the trial below
            failure.append(error)
        finally:
            reports.put((_DONE, None))

    runner = threading.Thread(target=fit, name="ray-train-fit", daemon=True)
    runner.start()
    try:
        while True:
            metrics, persisted = reports.get()
            if metrics == _DONE:
                break
            checkpoint = tune.Checkpoint(persisted.path, persisted.filesystem) if persisted is not None else None
            tune.report(metrics, checkpoint=checkpoint)  # Tune copies it into the trial's own folder
            if metrics.get("diverged"):
                break
        runner.join()
    finally:
        try:  # Tune has its own copies of the checkpoints it was handed
            storage.storage_filesystem.delete_dir(f"{storage.trial_fs_path}/{run_name}")
        except OSError:  # nothing was persisted (the run failed to start)
            pass
    if failure:
        raise failure[0]
