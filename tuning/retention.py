"""How many checkpoints a job keeps: bounded storage at paper scale.

A running trial keeps its newest checkpoint and the one before (``KEEP_CHECKPOINTS``, Ray Tune's
``num_to_keep``: Tune never deletes the newest). The one before is what a resume falls back on when
the newest is corrupted (``trainables.checkpoint.newest_intact``). Nothing in ovatune reads a trial's
"best" checkpoint: promotion, evaluation and replicates take a trial's last epoch.

Tune saves the job's state at most every 10 s (or 19 times what a save takes), and at the end of the
step in which a trial has written ``num_to_keep`` checkpoints since the last save: the checkpoint the
state names as a trial's newest is deleted only by the checkpoint that also makes Tune save again (a
driver killed in that moment's window resumes the trial from the start). The older one the state
lists may be gone: Tune deleted it after the save. The resumed trial's next checkpoint makes Tune
delete it again, and Ray 2.60 raises FileNotFoundError for the missing folder (ray-project/ray#27790)
in the middle of registering the new checkpoint: Tune logged 'Error handling checkpoint' with a
traceback and skipped the rest (the trial's checkpoint index, which then lags for good, the
invalidation of its saved state, and the count that forces the next save). :class:`GoneCheckpoints`
puts an empty folder back where such a checkpoint was, just before Tune deletes it, so the
registration completes. It is saved with the job; a job started before it resumes without it. (This
is why a running trial kept 3 checkpoints for a while: with 3, the tests' short trials never had one
deleted before a resume; a longer trial met it with 3 as with 2.)

A trial that has finished keeps only its newest checkpoint (:func:`keep_newest_of_finished`): what
promotion registers and what a resume reads back for a run closed too late; a finished trial is
never trained again. They are deleted once the job's ``Tuner.fit`` has returned, not as each trial
ends: Tune saves its state every few seconds, and a driver killed in between resumes from a state
that may still name the older checkpoint as the trial's newest. ``benchmarks/checkpoint_disk.py``
measures what a sweep keeps.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import pyarrow.fs
from ray import tune

KEEP_CHECKPOINTS = 2  # per running trial: the newest, and the one a resume falls back on past a corrupted newest


def keep_newest_of_finished(results: Iterable) -> None:
    """Delete, for each finished trial among a fit's Ray Tune ``results``, its checkpoints but the
    newest. A deletion that fails is a warning: the job's results stand."""
    for result in results:
        if result.error is not None or not finished(result) or result.checkpoint is None:
            continue  # failed, or stopped by a signal (a resume trains it on), or never checkpointed
        try:
            delete_older_checkpoints(result.checkpoint)
        except OSError as error:
            print(f"ovatune: warning: older checkpoints beside {result.checkpoint.path} were kept: {error}",
                  file=sys.stderr, flush=True)  # fmt: skip


def finished(result) -> bool:
    """Whether a Ray Tune result's trial has finished: Tune says so (``done``), or it reported its
    last epoch. A trial that finished before its driver was killed, restored as finished from the
    saved job, carries no ``done`` (seen in a clean-clone CI run: it kept 3 checkpoints)."""
    metrics = result.metrics or {}
    epochs = (result.config or {}).get("epochs")
    return bool(metrics.get("done")) or (epochs is not None and int(metrics.get("epoch", 0)) >= int(epochs))


def delete_older_checkpoints(newest) -> list[str]:
    """Delete the ``checkpoint_*`` folders beside Ray ``Checkpoint`` ``newest`` other than it; their paths."""
    from trainables.checkpoint import sibling_checkpoints  # torch: imported when a job ends, not with the driver

    older = sibling_checkpoints(newest)
    for checkpoint in older:
        newest.filesystem.delete_dir(checkpoint)
    return older


class GoneCheckpoints(tune.Callback):
    """Before Tune registers a trial's new checkpoint, put an empty folder where a checkpoint it is
    about to delete is gone (see the module's docstring): the deletion then finds it and the
    registration completes."""

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info) -> None:
        # Nothing may raise from here: Tune would then skip registering the checkpoint altogether.
        try:
            for old in checkpoints_tune_deletes_next(trial):
                if old.filesystem.get_file_info(old.path).type == pyarrow.fs.FileType.NotFound:
                    old.filesystem.create_dir(old.path)
        except Exception:  # noqa: BLE001 - the storage cannot be reached: Tune's own deletion says so
            return


def checkpoints_tune_deletes_next(trial: Any) -> list:
    """The checkpoints Tune deletes when ``trial``'s next checkpoint is registered: with ``num_to_keep``
    K and no score (checkpoints ordered by age), the oldest of those it lists beyond K - 1. Empty when
    Ray's bookkeeping is not what this reads (a Ray upgrade): Tune's own error then shows."""
    try:
        manager = trial.run_metadata.checkpoint_manager
        config = manager.checkpoint_config
        listed = list(manager.best_checkpoint_results)  # oldest first
    except AttributeError:
        return []
    if config.num_to_keep is None or config.checkpoint_score_attribute is not None:
        return []
    return [result.checkpoint for result in listed[: max(0, len(listed) + 1 - config.num_to_keep)]
            if result.checkpoint is not None]  # fmt: skip
