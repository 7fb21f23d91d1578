"""Shared test set-up: no telemetry, quiet Ray, every test's state under its own tmp_path."""

import logging
import os
import secrets
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from buckets import s3_client
from launch import free_port, run_ovatune, stop_group, wait_for

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


def _stream_handlers() -> list[logging.StreamHandler]:
    """The libraries' log handlers that hold a stream: not a file, not pytest's own (its log capture),
    not one that looks up sys.stderr each time (logging's last resort), not one without a stream
    (torch's trace handler, until it opens its own file: given capsys's stream, it took it for that
    file and closed its descriptor, and torch.export failed on ``fileno``)."""
    loggers = [logging.getLogger(), *(v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger))]  # fmt: skip
    return [h for logger in loggers for h in logger.handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
            and not type(h).__module__.startswith("_pytest")
            and not isinstance(getattr(type(h), "stream", None), property)
            and h.stream is not None]  # fmt: skip


@pytest.fixture
def in_process(capsys, monkeypatch):
    """``ovatune ARGS`` run in this process (``tuning.cli.main``), as a ``CompletedProcess`` with its
    exit code and what it printed (to ``sys.stdout`` and ``sys.stderr``: ``capsys``, whose streams
    have no file descriptor). The local Ray its first command starts serves the test's later ones
    (about 7 s less per command than a new process: test_champion's eleven commands took 122 s as
    processes, 42 s in process), and the next test's when that one runs its commands in process too
    (``pytest_runtest_teardown`` below); otherwise it is shut down after the test. For sequences of
    commands that check what they print and record, not how a process starts, ends or takes a
    signal: those go through ``launch.run_ovatune``."""
    from tuning.cli import main

    def run(*args: str, check: bool = False) -> subprocess.CompletedProcess:
        """``check``: assert exit code 0, showing the tail of both streams when not."""
        # as launch.environment leaves it out of a process: an earlier command's mlflow.set_tracking_uri
        # exported its store there, which the next command would otherwise take for the user's
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        capsys.readouterr()  # what came before is not this command's
        # The libraries' log handlers (Ray Tune's, MLflow's) hold the stderr of when they were made:
        # pointed at this command's for its duration, what they log is in its stderr, as it would be
        # in a process of its own (a test that asserts "no Traceback" sees Tune's tracebacks).
        before = {handler: handler.stream for handler in _stream_handlers()}
        for handler in before:
            handler.stream = sys.stderr
        try:
            code = main(list(args))
        finally:
            for handler in _stream_handlers():
                if handler in before:
                    handler.stream = before[handler]
                elif handler.stream is sys.stderr:  # made during the command, on its captured stderr
                    handler.stream = sys.__stderr__
        captured = capsys.readouterr()
        if check:
            assert code == 0, captured.out[-3000:] + captured.err[-3000:]
        return subprocess.CompletedProcess(["ovatune", *args], code, captured.out, captured.err)

    yield run


@pytest.fixture
def local_ray():
    """For a test that calls ``tuning.cli.main`` or the sweep's functions itself: the local Ray they
    start in this process, kept or shut down after the test as ``in_process``'s own."""
    yield


# The tests whose commands run in this process, on the local Ray their first command starts.
IN_PROCESS = {"in_process", "local_ray"}
_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if report.failed:
        item.stash[_FAILED] = True


@pytest.hookimpl(wrapper=True)  # around pytest's own, which tears down the test's fixtures
def pytest_runtest_teardown(item, nextitem):
    """The local Ray a test's in-process commands started (``tuning.cluster.init_ray``) serves the next
    test of this pytest worker too, when that one also runs its commands in process and this one
    passed: its first command then reuses it, as a later command of one test does (``init_ray``
    starts another where the workers' environment differs), and its tasks find the workers of
    earlier ones idle. Otherwise it is shut down here: a test after it starts with no Ray (tests
    assert that a refused command started none, start Rays of their own, count processes). A Ray
    that a fixture started itself (``ray.init``: test_resources' module-wide one) is the fixture's.
    A fixture whose teardown fails counts as a failed test (the Ray is shut down all the same)."""
    torn_down = False
    try:
        result = yield
        torn_down = True
        return result
    finally:
        _keep_or_shut_down_ray(item, nextitem, passed=torn_down and not item.stash.get(_FAILED, False))


def _keep_or_shut_down_ray(item, nextitem, passed: bool) -> None:
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return
    from tuning import cluster

    def in_process(test) -> bool:
        return test is not None and bool(IN_PROCESS & set(getattr(test, "fixturenames", ())))

    if not (in_process(item) or cluster._made_by_init_ray()):
        return
    local = cluster._made_by_init_ray() and cluster._connection.address is None
    if not (local and in_process(item) and in_process(nextitem) and passed):
        ray.shutdown()


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


@pytest.fixture
def s3_server() -> Iterator[dict[str, str]]:
    """An S3-compatible server on 127.0.0.1 (moto's server mode) with one bucket, ``ovatune``: the
    environment that reaches it (the endpoint for MLflow's boto3 and for pyarrow, a generated
    secret key), stopped by its PID afterwards."""
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    aws = {"AWS_ACCESS_KEY_ID": "ovatune-test", "AWS_SECRET_ACCESS_KEY": f"secret-{secrets.token_hex(12)}",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
           "MLFLOW_S3_ENDPOINT_URL": endpoint, "AWS_ENDPOINT_URL": endpoint}  # fmt: skip

    def answers() -> bool:
        try:
            urllib.request.urlopen(endpoint, timeout=2).close()
            return True
        except OSError:
            return False

    try:
        wait_for(answers, 60, "moto_server to answer")
        s3_client(aws).create_bucket(Bucket="ovatune")
        yield aws
    finally:
        stop_group(server, timeout=10)
