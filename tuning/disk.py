"""A full disk (or another storage failure) during a job: what counts as one, the space kept in
reserve so that the job can still stop cleanly, and how much space a resume needs.

When the home's disk fills mid-sweep, every writer fails at once: the trials' checkpoints, Ray
Tune's experiment state, the MLflow store's SQLite file, the driver's metric writes. ovatune then
stops the job as it stops for Ctrl-C (its trials keep their checkpoints, its state is saved, its
runs are closed as interrupted) and names the path and the space to free. Closing runs and saving
Tune's state need a little space on the very disk that is full: :class:`DiskReserve` holds a few
megabytes of it from the job's start and gives them back when a failure stops the job.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

RESERVE_BYTES = 8 * 2**20  # a stop's own writes: Tune's experiment state, the store's journal, the closed runs

# OSError numbers that mean "the storage cannot take more": a full disk, a quota, a file size
# limit, a disk error, a file system turned read-only.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS}
_SQLITE_STORAGE = ("database or disk is full", "disk i/o error", "attempt to write a readonly database")


@dataclass(frozen=True)
class StorageFailure:
    """Why a job stopped for its storage: the failure in words, and the path it names (or None)."""

    message: str
    path: str | None = None


def storage_failure(error: BaseException | str) -> StorageFailure | None:
    """The storage failure behind ``error`` (following its causes: MLflow wraps SQLAlchemy, which
    wraps sqlite3; Ray wraps a trial's OSError), or None when it is not one. A str is an error's
    text, as Ray Tune keeps a trial's (``Trial.get_error``)."""
    if isinstance(error, str):
        return _full_disk_text(error)
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in STORAGE_ERRNOS:
            return StorageFailure(os.strerror(error.errno), error.filename)
        if isinstance(error, sqlite3.OperationalError) and any(t in str(error).lower() for t in _SQLITE_STORAGE):
            return StorageFailure(f"the MLflow store's SQLite file: {error}")
        if failure := _full_disk_text(str(error)):  # a trial's error, as Ray's text
            return failure
        error = error.__cause__ or error.__context__
    return None


def _full_disk_text(text: str) -> StorageFailure | None:
    full = "[Errno 28]" in text or "[errno 28]" in text or "No space left on device" in text
    return StorageFailure(os.strerror(errno.ENOSPC)) if full else None


class DiskReserve:
    """:data:`RESERVE_BYTES` beside a job's Tune folder, in two files, held while its trials run.

    When a storage failure stops the job, the first half is given back (:meth:`release_for_stop`)
    for Tune's last save of its state; the second once its trials have stopped (:meth:`release`), for
    the driver's own writes (the runs closed as interrupted). Given back at once, the whole reserve
    went to the trials' last checkpoint writes, which raced the driver's (seen once in CI: the runs
    stayed open). On a disk already too full to hold it, there is none (the job then stops as it can).
    """

    def __init__(self, path: Path):
        self.paths = [path, path.with_name(path.name.removesuffix(".reserve") + ".closing.reserve")]
        for part in self.paths:
            try:
                with open(part, "wb") as reserve:
                    for _ in range(RESERVE_BYTES // 2 // 2**20):
                        reserve.write(bytes(2**20))  # written, so real blocks (a sparse file would hold none)
            except OSError:
                part.unlink(missing_ok=True)

    def release_for_stop(self) -> None:
        """The first half: Tune stops the trials and saves its state."""
        self.paths[0].unlink(missing_ok=True)

    def release(self) -> None:
        """All of it: the trials have stopped (or the job ended)."""
        for part in self.paths:
            part.unlink(missing_ok=True)


def folder_bytes(folder: Path) -> int:
    """The bytes of the files under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def space_to_free(job_folder: Path, remaining_trials: int) -> int:
    """Bytes a resume of the job in ``job_folder`` needs on its disk: what its largest trial folder
    holds (its kept checkpoints), for each trial still to finish, plus the reserve."""
    trials = [folder_bytes(p) for p in job_folder.iterdir() if p.is_dir()] if job_folder.is_dir() else []
    return max(trials, default=0) * max(1, remaining_trials) + RESERVE_BYTES


def megabytes(count: int) -> str:
    return f"{count / 2**20:.1f} MB"


def _not_a_storage_failure(record: logging.LogRecord) -> bool:
    if record.exc_info and record.exc_info[1] and storage_failure(record.exc_info[1]):
        return False
    return record.levelno < logging.WARNING or _full_disk_text(record.getMessage()) is None


def quiet_storage_errors() -> None:
    """Keep MLflow's SQLite store, Ray Tune's state saving and its trial failures, Ray Train's syncing
    of the experiment folder, and Ray's report of a stopped trial's error that nobody fetched, from
    logging each write that a full disk failed, with its traceback: the job stops for the first, in
    one line (idempotent)."""
    for name in ("mlflow.store.db.utils", "ray.tune.execution.experiment_state", "ray.tune.execution.tune_controller",
                 "ray.tune.tune", "ray._private.worker", "ray.train._internal.syncer"):  # fmt: skip
        log = logging.getLogger(name)
        if _not_a_storage_failure not in log.filters:
            log.addFilter(_not_a_storage_failure)


def mount_point(path: Path) -> Path:
    """The mount point of the file system that holds ``path`` (or its nearest existing parent)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path
