"""Ray Tune's storage as the driver sees it: a folder (the home's ``ray_results``, or a shared one
every node mounts) or a bucket (``s3://BUCKET/PREFIX``, ``--storage``), one sub-folder per job.

Tune itself reads and writes both through pyarrow's file systems; what ovatune needs on top is to
find a home's jobs (``--resume`` without ``--name``) and to know whether a name is taken. A bucket
is reached with the credentials of the usual AWS variables or files, and ``AWS_ENDPOINT_URL`` for
an S3-compatible store (pyarrow reads them); every node needs them, as every node writes checkpoints.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from typing import Any

from tuning.settings import Settings

# Why --storage refuses a key in its URI: Tune writes the storage path into the job's state (tuner.pkl)
# and ovatune prints it in the resume command; a submitted job's entrypoint shows it to the cluster.
KEYS_IN_STORAGE = ("--storage (or OVATUNE_STORAGE) carries a key (user:key@ or a key= parameter), which would be "
                   "written into the sweep's state and printed; give the bucket's credentials in the AWS variables "
                   "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or ~/.aws/credentials on every node instead")  # fmt: skip


JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_job_name(name: str) -> str:
    """``name`` if it can name a job (``--name``): letters, digits, ``.``, ``_`` and ``-``, no path
    separators, no ``..`` (it becomes a folder under the home and in the storage, and an MLflow tag).

    Raises:
        ValueError: a name that is not one.
    """
    if not JOB_NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"invalid name {name!r}: use up to 100 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit (no '/', no '..')")  # fmt: skip
    return name


class StorageUnavailable(ValueError):
    """The bucket cannot be reached or read (no credentials, no such bucket, no network)."""


def check_storage(settings: Settings) -> None:
    """A small write to a bucket storage and its deletion, so that a wrong bucket, endpoint or key (a
    read-only one too) is one clear error before Ray starts (a folder is made when the job starts).

    Raises:
        StorageUnavailable: no such bucket, or it cannot be written.
    """
    if not settings.storage_is_bucket:
        return
    from pyarrow import fs

    bucket, root = _bucket(settings)
    name = root.split("/", 1)[0]
    probe = f"{root}/.ovatune-write-check-{secrets.token_hex(4)}"
    try:
        missing = bucket.get_file_info(name).type == fs.FileType.NotFound
        if not missing:
            with bucket.open_output_stream(probe) as marker:  # Tune writes there: a read-only key fails now
                marker.write(b"ovatune")
            bucket.delete_file(probe)
    except (OSError, ValueError) as error:
        raise _unusable(settings, "cannot be written", error) from None
    if missing:
        raise StorageUnavailable(f"the storage {settings.display_storage}: no bucket {name!r} there; create it, "
                                 "or pass another --storage")  # fmt: skip


def _unusable(settings: Settings, what: str, error: BaseException) -> StorageUnavailable:
    """The one error for a bucket that does not answer as asked (``what``: "cannot be read", ...)."""
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return StorageUnavailable(
        f"the storage {settings.display_storage} {what} ({reason}); check the bucket, AWS_ENDPOINT_URL and the "
        "AWS credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or ~/.aws/credentials)"
    )


def _bucket(settings: Settings) -> tuple[Any, str]:
    """(pyarrow's file system of the bucket, the storage's path in it)."""
    from pyarrow import fs

    try:
        return fs.FileSystem.from_uri(settings.tune_storage)
    except (OSError, ValueError):  # pyarrow's ArrowInvalid is a ValueError; its text repeats the URI
        raise StorageUnavailable(
            f"the storage {settings.display_storage} is not a URI pyarrow can open: use s3://BUCKET/PREFIX, or a folder"
        ) from None


def job_names(settings: Settings, prefix: str) -> list[str]:
    """The jobs in the storage whose names start with ``prefix``, oldest first: in a folder by the
    job folder's time (its last state save, as before buckets), in a bucket by its start (the
    time of its ``tuner.pkl``: a bucket's folders have none)."""
    if not settings.storage_is_bucket:
        folders = settings.ray_results.glob(f"{prefix}*")
        return [p.name for p in sorted((p for p in folders if p.is_dir()), key=lambda p: p.stat().st_mtime)]
    from pyarrow import fs

    bucket, root = _bucket(settings)
    try:
        found = bucket.get_file_info(fs.FileSelector(root, allow_not_found=True))
        folders = [i.base_name for i in found if i.type == fs.FileType.Directory and i.base_name.startswith(prefix)]
        # a bucket's folders have no time of their own; Tune writes each job's tuner.pkl once, at its start
        started = bucket.get_file_info([f"{root}/{name}/tuner.pkl" for name in folders])
    except (OSError, ValueError) as error:
        raise _unusable(settings, "cannot be listed", error) from None
    ordered = sorted((info.mtime.timestamp(), name) for name, info in zip(folders, started)
                     if info.type == fs.FileType.File)  # fmt: skip
    return [name for _, name in ordered]


def job_exists(settings: Settings, name: str) -> bool:
    """Whether the storage holds anything of job ``name``."""
    if not settings.storage_is_bucket:
        return (settings.ray_results / name).exists()
    from pyarrow import fs

    bucket, root = _bucket(settings)
    try:
        return bucket.get_file_info(f"{root}/{name}").type != fs.FileType.NotFound
    except (OSError, ValueError) as error:
        raise _unusable(settings, "cannot be read", error) from None


# Why Tune's saved state is copied file by file here (whole_state_uploads): Tune writes a job's state
# (experiment_state-*.json, the searcher's and the callbacks' state, tuner.pkl) on the driver, then a
# background thread copies that folder into the job's folder in the storage with pyarrow, which writes
# each file in place. A driver killed during that copy left a truncated experiment_state file there,
# and the resume began with 'Failed to restore the run state' and a traceback, then started the job
# again from nothing (Tune's own fallback: 'Restarting experiment'). A bucket stores each object whole.
_WHOLE_UPLOADS = "_ovatune_whole_files"
PARTIAL = re.compile(r"\..+\.[0-9a-f]{8}\.partial")  # what a copy writes before renaming it: .NAME.HEX.partial


def whole_state_uploads() -> None:
    """Make Ray Tune's copies of a job's saved state into a storage folder atomic file by file: each
    file is copied beside its destination under a hidden ``.NAME.*.partial`` name, then renamed over
    it, so that a killed driver leaves each file as it was or as it is now, never half-written (Tune
    reads only the names it writes; the next copy removes a killed one's ``.partial``). The price: a
    file's new copy needs its whole size free beside the old one until the rename. Copies into a
    bucket stay as Tune makes them. Idempotent; acts in this process (the driver, where Tune saves
    its state)."""
    from ray.train._internal import storage as ray_storage

    upload = ray_storage._upload_to_fs_path
    if getattr(upload, _WHOLE_UPLOADS, False):
        return

    def upload_whole(local_path: str, fs: Any, fs_path: str, exclude: list[str] | None = None) -> None:
        from pyarrow.fs import LocalFileSystem

        if not isinstance(fs, LocalFileSystem) or exclude or not os.path.isdir(local_path):
            return upload(local_path, fs, fs_path, exclude)
        for folder, _, names in os.walk(local_path):
            target_folder = os.path.join(fs_path, os.path.relpath(folder, local_path))
            os.makedirs(target_folder, exist_ok=True)
            for stale in os.listdir(target_folder):  # a killed copy's: syncs of a job never overlap
                if PARTIAL.fullmatch(stale):  # (its name may not come back: each driver names its own state)
                    os.remove(os.path.join(target_folder, stale))
            for name in names:
                partial = os.path.join(target_folder, f".{name}.{secrets.token_hex(4)}.partial")
                try:
                    shutil.copyfile(os.path.join(folder, name), partial)
                    os.replace(partial, os.path.join(target_folder, name))
                finally:
                    if os.path.exists(partial):  # the copy failed (a full disk): no leftover
                        os.remove(partial)
        return None

    setattr(upload_whole, _WHOLE_UPLOADS, True)
    ray_storage._upload_to_fs_path = upload_whole
