"""Ray Tune's storage as the driver sees it: a folder (the home's ``ray_results``, or a shared one
every node mounts) or a bucket (``s3://BUCKET/PREFIX``, ``--storage``), one sub-folder per job.

Tune itself reads and writes both through pyarrow's file systems; what ovatune needs on top is to
find a home's jobs (``--resume`` without ``--name``) and to know whether a name is taken. A bucket
is reached with the credentials of the usual AWS variables or files, and ``AWS_ENDPOINT_URL`` for
an S3-compatible store (pyarrow reads them); every node needs them, as every node writes checkpoints.
"""

from __future__ import annotations

from tuning.settings import Settings


class StorageUnavailable(ValueError):
    """The bucket cannot be reached or read (no credentials, no such bucket, no network)."""


def check_storage(settings: Settings) -> None:
    """One request to a bucket storage, so that a wrong bucket, endpoint or key is one clear error
    before Ray starts (a folder is made when the job starts, as the home is).

    Raises:
        StorageUnavailable: the bucket cannot be read.
    """
    if not settings.storage_is_bucket:
        return
    from pyarrow import fs

    bucket, root = _bucket(settings)
    name = root.split("/", 1)[0]
    try:
        if bucket.get_file_info(name).type == fs.FileType.NotFound:
            raise StorageUnavailable(f"the storage {settings.display_storage}: no bucket {name!r} there; create it, "
                                     "or pass another --storage")  # fmt: skip
        bucket.get_file_info(fs.FileSelector(root, allow_not_found=True))
    except OSError as error:
        raise StorageUnavailable(
            f"the storage {settings.display_storage} cannot be read ({str(error).splitlines()[0]}); check the "
            "bucket, AWS_ENDPOINT_URL and the AWS credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or ~/.aws/credentials)"
        ) from None


def _bucket(settings: Settings):
    """(pyarrow's file system of the bucket, the storage's path in it)."""
    from pyarrow import fs

    try:
        return fs.FileSystem.from_uri(settings.tune_storage)
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise StorageUnavailable(f"the storage {settings.display_storage} cannot be used: {error}") from None


def job_names(settings: Settings, prefix: str) -> list[str]:
    """The jobs in the storage whose names start with ``prefix``, least recently started first."""
    if not settings.storage_is_bucket:
        folders = settings.ray_results.glob(f"{prefix}*")
        return [p.name for p in sorted((p for p in folders if p.is_dir()), key=lambda p: p.stat().st_mtime)]
    from pyarrow import fs

    bucket, root = _bucket(settings)
    try:
        found = bucket.get_file_info(fs.FileSelector(root, allow_not_found=True))
        folders = [info.base_name for info in found if info.type == fs.FileType.Directory]
        # a bucket's folders have no time of their own; Tune writes each job's tuner.pkl once, at its start
        started = bucket.get_file_info([f"{root}/{name}/tuner.pkl" for name in folders])
    except OSError as error:
        raise StorageUnavailable(f"the storage {settings.display_storage} cannot be listed: {error}") from None
    ordered = sorted((info.mtime.timestamp(), name) for name, info in zip(folders, started)
                     if info.type == fs.FileType.File and name.startswith(prefix))  # fmt: skip
    return [name for _, name in ordered]


def job_exists(settings: Settings, name: str) -> bool:
    """Whether the storage holds anything of job ``name``."""
    if not settings.storage_is_bucket:
        return (settings.ray_results / name).exists()
    from pyarrow import fs

    bucket, root = _bucket(settings)
    try:
        return bucket.get_file_info(f"{root}/{name}").type != fs.FileType.NotFound
    except OSError as error:
        raise StorageUnavailable(f"the storage {settings.display_storage} cannot be read: {error}") from None
