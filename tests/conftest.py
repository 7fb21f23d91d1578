"""Shared test set-up: no telemetry, quiet Ray, every test's state under its own tmp_path."""

import os

import pytest

from launch import run_ovatune

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
    """``run_ovatune`` with ``check=True``: asserts the command succeeded (showing its output's tail
    when not) and returns its stdout."""

    def run(*args: str, timeout: float = 900) -> str:
        return run_ovatune(*args, timeout=timeout, check=True).stdout

    return run
