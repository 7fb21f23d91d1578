"""Where a sweep keeps its state: one home directory for Ray results, checkpoints, MLflow and reports.

The home is ``--home``, else ``$OVATUNE_HOME``, else ``./ovatune-home``. The MLflow tracking URI is
``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``, else a SQLite file in the home (artifacts beside it).
Ray Tune's storage (sweeps' state and checkpoints) is ``--storage``, else ``$OVATUNE_STORAGE``, else
the home's ``ray_results``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEFAULT_HOME = "ovatune-home"
STORAGE_ENV = "OVATUNE_STORAGE"  # --storage's default


@dataclass(frozen=True)
class Settings:
    """Resolved locations for one invocation."""

    home: Path
    tracking_uri: str
    user_in_uri: str | None = None  # the user whose password came in --tracking-uri (moved out of it)
    storage: str | None = None  # --storage: Ray Tune's storage when not the home's ray_results

    @property
    def tune_storage(self) -> str:
        """Ray Tune's storage_path: one folder per job, with its state and trial checkpoints. The
        home's ray_results, or ``--storage``: a folder every node sees, or a bucket (``s3://…``)."""
        return self.storage or str(self.home / "ray_results")

    @property
    def display_storage(self) -> str:
        """:attr:`tune_storage` as it may be printed: any key in it masked."""
        return redact(self.tune_storage)

    @property
    def storage_is_bucket(self) -> bool:
        """Whether Tune's storage is a bucket (``s3://…``, any pyarrow file system's URI) rather than a folder."""
        return "://" in self.tune_storage

    def job_storage(self, name: str) -> str:
        """Where job ``name`` lives in :attr:`tune_storage` (a bucket URI keeps its query, such as
        ``?endpoint_override=…``, after the path)."""
        parts = urlsplit(self.tune_storage)
        if not self.storage_is_bucket:
            return str(Path(self.tune_storage) / name)
        return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{name}"))

    @property
    def ray_results(self) -> Path:
        """The local folder of each job's driver lock and disk reserve: the storage folder itself,
        or the home's ray_results when the storage is a bucket (a lock there guards this machine's
        drivers only; a bucket has no lock)."""
        return self.home / "ray_results" if self.storage_is_bucket else Path(self.tune_storage)

    @property
    def artifact_root(self) -> Path:
        """Artifacts of experiments created in a local (SQLite or file) store."""
        return self.home / "mlartifacts"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def display_uri(self) -> str:
        """The tracking URI as it may be printed or logged: any password or token masked."""
        return redact(self.tracking_uri)

    @property
    def is_local_store(self) -> bool:
        return self.tracking_uri.startswith(("sqlite:", "file:")) or "://" not in self.tracking_uri

    @property
    def credentials_note(self) -> str:
        """A shell comment to end a printed command with when its ``--tracking-uri`` lost the password
        the user gave in it (ovatune prints no password): how to give it again. Empty otherwise."""
        if self.user_in_uri is None:
            return ""
        return (f"  # as {self.user_in_uri}: give the password again (user:password@ in --tracking-uri, "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or ~/.mlflow/credentials)")  # fmt: skip


def resolve_settings(
    home: str | os.PathLike | None = None, tracking_uri: str | None = None, storage: str | None = None
) -> Settings:
    """Settings from explicit values, then the environment, then the defaults."""
    home_path = Path(home or os.environ.get("OVATUNE_HOME") or DEFAULT_HOME).expanduser().resolve()
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home_path / 'mlflow.db'}"
    storage = storage or os.environ.get(STORAGE_ENV) or None
    if storage and storage.startswith("file://"):  # a folder, however it is written
        storage = urlsplit(storage).path
    if storage and "://" not in storage:
        storage = str(Path(storage).expanduser().resolve())
    return Settings(home_path, *_credentials_to_environment(uri), storage=storage)


def _credentials_to_environment(uri: str) -> tuple[str, str | None]:
    """An HTTP tracking URI's ``user:password@`` moved into MLflow's MLFLOW_TRACKING_USERNAME and
    MLFLOW_TRACKING_PASSWORD: MLflow sends them as basic auth, and the URI, which MLflow and ovatune
    print in run links and messages, no longer holds the password. The URI names one user on one
    server, so its credentials win over the environment's (and over ``~/.mlflow/credentials``).

    Returns:
        (the URI without them, the user they named, or None when the URI held no password).
    """
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or parts.password is None:
        return uri, None
    os.environ["MLFLOW_TRACKING_USERNAME"] = parts.username or ""
    os.environ["MLFLOW_TRACKING_PASSWORD"] = parts.password
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1])), parts.username or ""


_SECRET_QUERY = re.compile(r"((?:password|passwd|pwd|token|secret|key)=)[^&;]*", re.IGNORECASE)


def has_secret(uri: str) -> bool:
    """Whether ``uri`` carries a password or key (``user:password@``, or a secret-looking query value)."""
    parts = urlsplit(uri)
    # a bucket's ACCESS:KEY@ whose key holds a '/', as AWS secret keys can: urlsplit ends the host there
    bucket = parts.scheme not in ("http", "https")
    slashed = bucket and re.match(r"[a-z0-9+.-]+://[^@?#/]*:[^@?#]*@", uri, re.IGNORECASE)
    return parts.password is not None or bool(slashed) or bool(_SECRET_QUERY.search(parts.query))


def redact(uri: str) -> str:
    """``uri`` with the password of ``user:password@`` and secret-looking query values replaced by ***."""
    parts = urlsplit(uri)
    if parts.password is None and not _SECRET_QUERY.search(parts.query):
        return uri  # nothing to hide (and urlunsplit would drop sqlite:////'s empty host)
    netloc = parts.netloc
    if parts.password is not None:
        user = parts.username or ""
        host = netloc.rsplit("@", 1)[1]
        netloc = f"{user}:***@{host}"
    return urlunsplit(parts._replace(netloc=netloc, query=_SECRET_QUERY.sub(r"\1***", parts.query)))
