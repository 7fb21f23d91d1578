"""Shared test set-up: no telemetry, quiet Ray, every test's state under its own tmp_path."""

import os

import pytest

from launch import run_ovatune

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


@pytest.hookimpl(trylast=True)  # after pytest-xdist's own, which appends each test's group to its id
def pytest_collection_modifyitems(config, items):
    """The slow (end-to-end) tests first: on ``make test``'s two workers the minutes-long ones start
    early and the quick ones fill the end, instead of one worker finishing a long test alone.

    Under ``--dist loadgroup``, a test with an ``xdist_group`` mark whose id does not name its group
    would run beside its group's others: refused (pytest 9.2 with pytest-xdist 3.8 did that silently).
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: file order otherwise
    if getattr(config.option, "loadgroup", False):  # set on each pytest-xdist worker by --dist loadgroup
        ungrouped = [item.nodeid for item in items if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
        if ungrouped:
            raise pytest.UsageError(f"pytest-xdist did not group {ungrouped[0]} (and {len(ungrouped) - 1} more): "
                                    "pin the pytest and pytest-xdist versions that pyproject.toml names")  # fmt: skip


@pytest.fixture(autouse=True)
def _tracking_uri_as_it_was():
    """``mlflow.set_tracking_uri`` also sets MLFLOW_TRACKING_URI in the process's environment, so an
    in-process command (``tuning.cli.main``) handed its store to every later test of the worker that
    resolves its settings from the environment (test_engine's store fixture read test_evaluate's)."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


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


@pytest.fixture
def tiny(tmp_path):
    """A tiny classifier (2×2 one-channel images, 3 classes, ova_dm) and the serving bundle
    ``write_serving_bundle`` wrote for it (threshold 0.5): (classifier, bundle folder)."""
    import torch

    from serving.bundle import write_serving_bundle
    from trainables.models import build_classifier

    torch.manual_seed(0)
    config = {"model": "mlp", "hidden": [4], "loss": "ova_dm"}
    classifier = build_classifier((1, 2, 2), 3, config).eval()
    meta = {"config": config, "input_shape": [1, 2, 2], "class_names": ["a", "b", "c"]}
    info = {"preprocessing": "images_0_255_nhwc", "threshold": 0.5, "raw_input_shape": [2, 2, 1]}
    return classifier, write_serving_bundle(tmp_path / "bundle", classifier, meta, **info)
