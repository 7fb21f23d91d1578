"""Where a sweep keeps its state: one home directory for Ray results, checkpoints, MLflow and reports.

The home is ``--home``, else ``$OVATUNE_HOME``, else ``./ovatune-home``. The MLflow tracking URI is
``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``, else a SQLite file in the home (artifacts beside it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEFAULT_HOME = "ovatune-home"


@dataclass(frozen=True)
class Settings:
    """Resolved locations for one invocation."""

    home: Path
    tracking_uri: str
    user_in_uri: str | None = None  # the user whose password came in --tracking-uri (moved out of it)

    @property
    def ray_results(self) -> Path:
        """Ray Tune's storage_path: one folder per sweep, with trial checkpoints."""
        return self.home / "ray_results"

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


def resolve_settings(home: str | os.PathLike | None = None, tracking_uri: str | None = None) -> Settings:
    """Settings from explicit values, then the environment, then the defaults."""
    home_path = Path(home or os.environ.get("OVATUNE_HOME") or DEFAULT_HOME).expanduser().resolve()
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home_path / 'mlflow.db'}"
    return Settings(home_path, *_credentials_to_environment(uri))


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
