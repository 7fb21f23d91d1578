"""How many checkpoints a job keeps: bounded storage at paper scale.

A running trial keeps its newest checkpoint and the one before (``KEEP_CHECKPOINTS``, Ray Tune's
``num_to_keep``: Tune never deletes the newest). The one before is what a resume falls back on when
the newest is corrupted (``trainables.checkpoint.newest_intact``). Nothing in ovatune reads a trial's
"best" checkpoint: promotion, evaluation and replicates take a trial's last epoch.

Tune saves the job's state every few seconds, and at once when a trial has written ``num_to_keep``
checkpoints since the last save: the checkpoint the state names as a trial's newest is deleted only by
the checkpoint that also makes Tune save again (a driver killed in that moment's window resumes the
trial from the start). The older one the state lists may be gone: Tune deleted it after the save. The
resumed trial's next checkpoint makes Tune delete it again, and Tune logs the missing folder as an
error with its traceback (ray-project/ray#27790): :func:`quiet_gone_checkpoints` drops that record,
since the folder is gone as Tune wanted. (This is why a running trial kept 3 checkpoints for a
while: with 3, the short trials of the tests never had one deleted before a resume.)

A trial that has finished keeps only its newest checkpoint (:func:`keep_newest_of_finished`): what
promotion registers and what a resume reads back for a run closed too late; a finished trial is
never trained again. They are deleted once the job's ``Tuner.fit`` has returned, not as each trial
ends: Tune saves its state every few seconds, and a driver killed in between resumes from a state
that may still name the older checkpoint as the trial's newest. ``benchmarks/checkpoint_disk.py``
measures what a sweep keeps.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Iterable

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


def quiet_gone_checkpoints() -> None:
    """Keep Ray Tune from logging, as an error with its traceback, its deletion of a checkpoint that is
    already gone: a resumed trial's saved state lists one that Tune deleted after the save (see the
    module's docstring). Any other error handling a checkpoint is still logged (idempotent)."""
    log = logging.getLogger("ray.tune.execution.tune_controller")
    if _not_a_gone_checkpoint not in log.filters:
        log.addFilter(_not_a_gone_checkpoint)


def _not_a_gone_checkpoint(record: logging.LogRecord) -> bool:
    error = record.exc_info[1] if record.exc_info else None
    if not isinstance(error, FileNotFoundError) or "Error handling checkpoint" not in str(record.msg):
        return True
    # raised where Tune deletes a checkpoint (ray.train._internal.storage._delete_fs_path), nowhere else
    return not any(frame.name == "_delete_fs_path" for frame in traceback.extract_tb(error.__traceback__))
