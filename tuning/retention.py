"""How many checkpoints a job keeps: bounded storage at paper scale.

A running trial keeps its newest checkpoint and the one before (``KEEP_CHECKPOINTS``, Ray Tune's
``num_to_keep``: Tune never deletes the newest). The one before is what a resume falls back on when
the newest is corrupted (``trainables.checkpoint.newest_intact``). Nothing in ovatune reads a trial's
"best" checkpoint: promotion, evaluation and replicates take a trial's last epoch.

Tune saves the job's state at most every 10 s (or 19 times what a save takes), and at the end of the
step in which a trial has written ``num_to_keep`` checkpoints since the last save: the checkpoint the
state names as a trial's newest is deleted only by the checkpoint that also makes Tune save again. A
driver killed in that moment's window leaves a state whose newest checkpoint for the trial is gone,
with two newer ones beside it. Ray 2.60 then refuses to restore the trial ('Could not recover from
checkpoint as it does not exist on storage anymore'): locally it printed tracebacks and trained the
trial again from its first epoch; in a bucket the trial failed. At a resumed job's first step
:class:`GoneCheckpoints` points each such trial at the newest checkpoint in its folder
(:func:`resume_from_newest_saved`), with the training iteration it was saved at, so the trial goes
on from there.

The older one the state lists may be gone too: Tune deleted it after the save. The resumed trial's
next checkpoint makes Tune delete it again, and Ray 2.60 raises FileNotFoundError for the missing
folder (ray-project/ray#27790) in the middle of registering the new checkpoint: Tune logged 'Error
handling checkpoint' with a traceback and skipped the rest (the trial's checkpoint index, which then
lags for good, the invalidation of its saved state, and the count that forces the next save).
:class:`GoneCheckpoints` puts an empty folder back where such a checkpoint was, just before Tune
deletes it, so the registration completes. It is saved with the job (pickled by reference: a job
saved with it gets what the class does now); a job started before it resumes without it. (This is
why a running trial kept 3 checkpoints for a while: with 3, the tests' short trials never had one
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
    """The checkpoints a job's saved state names that Tune deleted after the save (see the module's
    docstring). At the first step of this process, a trial whose newest one is gone is pointed at the
    newest in its folder. Before Tune registers a trial's new checkpoint, an empty folder is put where
    a checkpoint it is about to delete is gone: the deletion then finds it and the registration
    completes."""

    def __getstate__(self) -> dict:
        return {}  # what this process has checked is not the next process's (Tune pickles callbacks)

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        if self.__dict__.get("checked"):
            return
        self.checked = True  # the trials a resume restored are all there at its first step
        for trial in trials:
            if trial.status == "TERMINATED":
                continue  # finished: never restored
            try:
                lost = resume_from_newest_saved(trial)
            except Exception as error:  # noqa: BLE001 - the storage cannot be reached: Tune's restore says so
                lost = f"its checkpoints could not be checked ({type(error).__name__}: {error})"
            if lost:
                from tuning.progress import run_names

                print(f"ovatune: warning: {run_names(trial)}: {lost}", file=sys.stderr, flush=True)

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info) -> None:
        # Nothing may raise from here: Tune would then skip registering the checkpoint altogether.
        try:
            for old in checkpoints_tune_deletes_next(trial):
                if old.filesystem.get_file_info(old.path).type == pyarrow.fs.FileType.NotFound:
                    old.filesystem.create_dir(old.path)
        except Exception:  # noqa: BLE001 - the storage cannot be reached: Tune's own deletion says so
            return


def resume_from_newest_saved(trial: Any) -> str | None:
    """When the newest checkpoint that ``trial``'s restored Tune state names is gone, name the newest
    one left in the trial's folder whose epoch can be read instead: one saved after it (a driver
    killed between Tune's deletion and its next save, see the module's docstring), else before it;
    with none, no checkpoint (the trial starts over).

    The replacement carries the Tune result the state has, with the saved checkpoint's epoch and the
    training iteration it was reported at (the state's offset between the two: one report per epoch,
    plus one per earlier resume of a pack), which the trial's next results count on (ASHA's rungs);
    the trial's next checkpoint is numbered after every one in its folder.

    Returns:
        What the trial loses, to warn of (epochs trained again); None when nothing was gone or a
        newer checkpoint stands in.
    """
    try:
        manager = trial.run_metadata.checkpoint_manager
        listed = manager.latest_checkpoint_result
        storage = trial.storage
    except AttributeError:  # not Ray 2.60's bookkeeping: Tune's own restore decides
        return None
    if listed is None or listed.checkpoint is None:
        return None
    gone = listed.checkpoint
    if gone.filesystem.get_file_info(gone.path).type != pyarrow.fs.FileType.NotFound:
        return None
    from trainables.checkpoint import saved_epoch, sibling_checkpoints  # torch: only where one is gone

    name = gone.path.rstrip("/").rpartition("/")[2]
    try:
        candidates = sibling_checkpoints(gone)[::-1]  # newest first
    except (OSError, ValueError):  # the trial's folder is gone too
        candidates = []
    offset = int(listed.metrics.get("training_iteration", 0)) - int(listed.metrics.get("epoch", 0))
    for path in candidates:
        try:
            epoch = saved_epoch(gone.filesystem, path)
        except (OSError, ValueError, KeyError):
            continue  # not readable: an older one may be
        chosen = path.rpartition("/")[2]
        replacement = type(listed)(
            checkpoint=type(gone)(path=path, filesystem=gone.filesystem),
            metrics={
                **listed.metrics,
                "epoch": epoch,
                "training_iteration": epoch + offset,
                "checkpoint_dir_name": chosen,
            },
        )
        manager._checkpoint_results = [
            *(result for result in manager._checkpoint_results
              if result is not listed and result.checkpoint.path != path),
            replacement,
        ]  # fmt: skip
        manager._latest_checkpoint_result = replacement
        # the index of the newest folder written (readable or not): Tune adds one before writing the next
        storage.current_checkpoint_index = max(storage.current_checkpoint_index, int(candidates[0].rpartition("_")[2]))
        lost = (
            f"its newest checkpoint {name} is gone; it resumes from {chosen} (epoch {epoch})" if chosen < name else None
        )
        break
    else:
        manager._checkpoint_results = []
        manager._latest_checkpoint_result = None
        lost = f"its newest checkpoint {name} is gone and no other is readable; it trains again from its first epoch"
    trial.invalidate_json_state()  # the job's next save records the change
    trial.run_metadata.invalidate_cache()
    return lost


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
