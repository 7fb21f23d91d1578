"""What counts as a storage failure, the reserve that lets a job stop on a full disk, and the space a
resume needs (``tuning.disk``). A whole sweep on a full tmpfs is ``test_full_disk.py``."""

import errno
import logging
import os
import sqlite3
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException

from tuning.disk import (
    RESERVE_BYTES,
    DiskReserve,
    mount_point,
    quiet_storage_errors,
    space_to_free,
    storage_failure,
)


def _full_sqlite_error(tmp_path: Path) -> sqlite3.OperationalError:
    """A real SQLITE_FULL: a database capped at a few pages, written past them."""
    connection = sqlite3.connect(tmp_path / "small.db")
    connection.execute("CREATE TABLE metrics (value BLOB)")
    connection.execute("PRAGMA max_page_count = 3")
    try:
        connection.execute("INSERT INTO metrics VALUES (?)", (b"x" * 100_000,))
    except sqlite3.OperationalError as error:
        return error
    finally:
        connection.close()
    raise AssertionError("the capped database took the row")


def test_a_full_sqlite_store_is_a_storage_failure_through_mlflows_wrapping(tmp_path):
    full = _full_sqlite_error(tmp_path)
    assert "database or disk is full" in str(full)
    try:  # as MLflow's store raises it: MlflowException from SQLAlchemy's error from sqlite3's
        try:
            raise RuntimeError("(sqlite3.OperationalError) wrapped") from full
        except RuntimeError as wrapped:
            raise MlflowException("(raised as a result of Query-invoked autoflush)") from wrapped
    except MlflowException as error:
        failure = storage_failure(error)
    assert failure is not None and "database or disk is full" in failure.message


@pytest.mark.parametrize("number", [errno.ENOSPC, errno.EDQUOT, errno.EIO])
def test_an_oserror_of_full_or_failing_storage_names_its_path(number):
    failure = storage_failure(OSError(number, os.strerror(number), "/data/ray_results/s1/trial/checkpoint"))
    assert failure is not None
    assert failure.message == os.strerror(number) and failure.path == "/data/ray_results/s1/trial/checkpoint"


def test_a_trials_full_disk_seen_only_as_rays_text_is_a_storage_failure():
    text = "ray::ImplicitFunc.train() ... OSError: [Errno 28] Error writing bytes to file. Detail: [errno 28] No space left on device"
    assert storage_failure(RuntimeError(text)).message == os.strerror(errno.ENOSPC)


@pytest.mark.parametrize(
    "error",
    [OSError(errno.ENOENT, "No such file or directory", "x"), ValueError("bad lr"), MlflowException("RESOURCE_DOES_NOT_EXIST")],
)  # fmt: skip
def test_other_errors_are_not_storage_failures(error):
    assert storage_failure(error) is None


def test_the_reserve_holds_real_blocks_and_gives_them_back_in_two_halves(tmp_path):
    reserve = DiskReserve(tmp_path / ".job.reserve")
    stats = [part.stat() for part in reserve.paths]
    assert sum(s.st_size for s in stats) == RESERVE_BYTES
    assert all(s.st_blocks * 512 >= s.st_size for s in stats)  # not sparse files
    reserve.release_for_stop()  # a storage failure: Tune's stop gets the first half
    assert not reserve.paths[0].exists() and reserve.paths[1].exists()  # the driver's closing writes, the second
    reserve.release()
    assert not any(part.exists() for part in reserve.paths) and not list(tmp_path.glob(".*.reserve"))
    reserve.release()  # twice is fine (a failure releases it, then the job's end)


def test_no_reserve_where_it_cannot_be_made(tmp_path):
    reserve = DiskReserve(tmp_path / "no such folder" / ".job.reserve")  # as on a disk already full
    assert not any(part.exists() for part in reserve.paths)
    reserve.release()


def test_the_space_to_free_is_the_largest_trial_for_each_remaining_one_plus_the_reserve(tmp_path):
    for name, size in (("trial_a", 3000), ("trial_b", 5000)):
        (tmp_path / name / "checkpoint_000001").mkdir(parents=True)
        (tmp_path / name / "checkpoint_000001" / "state.pt").write_bytes(b"x" * size)
    (tmp_path / "experiment_state.json").write_text("{}")  # not a trial
    assert space_to_free(tmp_path, remaining_trials=3) == 3 * 5000 + RESERVE_BYTES
    assert space_to_free(tmp_path / "not yet made", remaining_trials=3) == RESERVE_BYTES


def test_the_mount_point_is_that_of_the_nearest_existing_folder(tmp_path):
    assert mount_point(Path("/proc/self/status")) == Path("/proc")
    point = mount_point(tmp_path / "not" / "made")
    assert os.path.ismount(point) and tmp_path.is_relative_to(point)


def test_mlflows_traceback_for_each_failed_write_is_not_logged(tmp_path, caplog):
    quiet_storage_errors()
    quiet_storage_errors()  # idempotent
    log = logging.getLogger("mlflow.store.db.utils")
    full, other = _full_sqlite_error(tmp_path), sqlite3.OperationalError("no such table: runs")
    with caplog.at_level(logging.ERROR, logger="mlflow.store.db.utils"):
        for error in (full, other):
            try:
                raise error
            except sqlite3.OperationalError:
                log.exception("SQLAlchemy database error. The following exception is caught.")
    assert [record.exc_info[1] for record in caplog.records] == [other]  # the full disk's is left out


def test_a_trials_error_record_as_text_is_read_as_text():
    """``Trial.get_error`` hands back the error file's text, not an exception."""
    assert storage_failure("Failure # 1 (occurred at …)\nValueError: lr must be positive") is None
    assert storage_failure("OSError: [Errno 28] No space left on device").message == os.strerror(errno.ENOSPC)


def test_rays_unhandled_error_of_a_stopped_trials_full_disk_is_not_logged(caplog):
    """A trial that failed on the full disk while the job stopped: Ray logs its unfetched error as text."""
    quiet_storage_errors()
    log = logging.getLogger("ray._private.worker")
    with caplog.at_level(logging.ERROR, logger="ray._private.worker"):
        log.error(
            "Unhandled error (suppress with 'RAY_IGNORE_UNHANDLED_ERRORS=1'): ray::ImplicitFunc.train() "
            "... OSError: [Errno 28] Error writing bytes to file. Detail: [errno 28] No space left on device"
        )
        log.error("Unhandled error (suppress with 'RAY_IGNORE_UNHANDLED_ERRORS=1'): ValueError: bad lr")
    assert [record.getMessage() for record in caplog.records] == [
        "Unhandled error (suppress with 'RAY_IGNORE_UNHANDLED_ERRORS=1'): ValueError: bad lr"
    ]


def test_ray_trains_syncer_warning_of_a_full_disk_is_not_logged(caplog):
    """Seen in CI: Ray Train's syncer warned with the traceback of a copy that the full disk failed,
    while the job stopped in its one line; a sync failure for another reason still shows."""
    quiet_storage_errors()
    log = logging.getLogger("ray.train._internal.syncer")
    with caplog.at_level(logging.WARNING, logger="ray.train._internal.syncer"):
        log.warning("Last sync command failed with the following error:\nTraceback (most recent call last):\n"
                    "OSError: [Errno 28] Error writing bytes to file. Detail: [errno 28] No space left on device")  # fmt: skip
        log.warning("Last sync command failed with the following error:\nPermissionError: [Errno 13] denied")
    assert [record.getMessage() for record in caplog.records] == [
        "Last sync command failed with the following error:\nPermissionError: [Errno 13] denied"
    ]
