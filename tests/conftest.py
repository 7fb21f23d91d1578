"""Shared test set-up: no telemetry, quiet Ray, every test's state under its own tmp_path."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty ovatune home for one test (Ray results, MLflow SQLite store, reports)."""
    path = tmp_path / "home"
    monkeypatch.setenv("OVATUNE_HOME", str(path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return path


@pytest.fixture
def ovatune():
    """Run the installed ``ovatune`` command; asserts it succeeded (showing its output's tail when
    not) and returns its stdout."""

    def run(*args: str, timeout: float = 900) -> str:
        command = [str(Path(sys.executable).parent / "ovatune"), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout

    return run
