"""Where a sweep keeps its state: one home directory for Ray results, checkpoints, MLflow and reports.

The home is ``--home``, else ``$OVATUNE_HOME``, else ``./ovatune-home``. The MLflow tracking URI is
``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``, else a SQLite file in the home (artifacts beside it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = "ovatune-home"


@dataclass(frozen=True)
class Settings:
    """Resolved locations for one invocation."""

    home: Path
    tracking_uri: str

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
    def is_local_store(self) -> bool:
        return self.tracking_uri.startswith(("sqlite:", "file:")) or "://" not in self.tracking_uri


def resolve_settings(home: str | os.PathLike | None = None, tracking_uri: str | None = None) -> Settings:
    """Settings from explicit values, then the environment, then the defaults."""
    home_path = Path(home or os.environ.get("OVATUNE_HOME") or DEFAULT_HOME).expanduser().resolve()
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home_path / 'mlflow.db'}"
    return Settings(home=home_path, tracking_uri=uri)
