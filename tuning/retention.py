"""How many checkpoints a job keeps: bounded storage at paper scale.

A running trial keeps its newest checkpoints (``KEEP_CHECKPOINTS``, Ray Tune's ``num_to_keep``:
Tune never deletes the newest); the older ones are what a resume falls back on when the newest is
corrupted (``trainables.checkpoint.newest_intact``). Nothing in ovatune reads a trial's "best"
checkpoint: promotion, evaluation and replicates take a trial's last epoch. Why 3, not 2: with 2, a
resumed trial once met Tune's own deletion of a checkpoint that its saved state still listed
('Error handling checkpoint', a traceback in the clean-clone CI run of the replicates resume test).

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

KEEP_CHECKPOINTS = 3  # per running trial: the newest, and older ones a resume falls back on past a corrupted newest


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
