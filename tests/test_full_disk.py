"""A full disk mid-sweep, for real: the home is a small tmpfs, filled to its last byte while the
trials train. Every writer then fails at once (the trials' checkpoints, Ray Tune's state, the MLflow
store's SQLite file, the driver's metric writes). The sweep must stop in one error line that names
the path and the space to free, close its runs as interrupted, promote nothing, and print the
command that, once space is freed, finishes it with every epoch of every trial in MLflow.

Mounting a tmpfs needs root, which CI has (``.ci/run`` runs the tests as root in a network
namespace); elsewhere this module is skipped, with the reason.
"""

import errno
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from launch import start_ovatune

pytestmark = pytest.mark.slow

EPOCHS = 20
SWEEP = ("sweep", "digits", "--losses", "softmax,ova", "--trials", "2", "--epochs", str(EPOCHS),
         "--set", "checkpoint_every=1", "--name", "full")  # fmt: skip


@pytest.fixture
def small_home(tmp_path, monkeypatch):
    """An ovatune home on its own 64 MB tmpfs, unmounted after the test."""
    home = tmp_path / "home"
    home.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(home)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root, as in CI): {mounted.stderr.strip()}")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield home
    subprocess.run(["umount", "-l", str(home)], check=False)


def _epochs_reported(folder: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in folder.glob("*/result.json"))


def _fill(path: Path) -> None:
    """Write ``path`` until its file system has no byte left."""
    block = b"\0" * 2**20
    with open(path, "wb", buffering=0) as ballast:
        try:
            while True:
                ballast.write(block)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
    with open(path, "ab", buffering=0) as ballast:  # the last partial megabyte too
        try:
            while True:
                ballast.write(b"\0" * 4096)
        except OSError:
            pass


def test_a_full_disk_stops_the_sweep_in_one_line_and_the_resume_loses_no_epoch(small_home, in_process):
    sweep = start_ovatune(*SWEEP, home=small_home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True)  # fmt: skip
    ballast = small_home / "ballast"
    try:
        deadline = time.time() + 300
        while _epochs_reported(small_home / "ray_results" / "full") < 6:  # a few epochs in, no trial done
            assert time.time() < deadline and sweep.poll() is None, "the sweep ended before the disk filled"
            time.sleep(0.2)
        _fill(ballast)
        output, errors = sweep.communicate(timeout=300)
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)

    # It used to print 489 lines with 10 tracebacks, ending in a 1.5 kB MLflow exception.
    assert sweep.returncode == 1, output[-3000:] + errors[-3000:]
    assert "Traceback" not in output + errors, errors[-5000:]
    (error,) = [line for line in errors.splitlines() if line.startswith("ovatune: error:")]
    assert error.startswith("ovatune: error: sweep full stopped: "), error
    assert f" free on the file system at {small_home}: free that, then resume with: " in error
    needed = float(error.split("Its resume needs about ")[1].split(" MB")[0])
    assert needed > 8.0  # the reserve, and each unfinished trial's checkpoints
    command = error.split("then resume with: ")[1]
    assert command == f"ovatune sweep digits --resume --name full --home {small_home}"

    client = MlflowClient(f"sqlite:///{small_home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("digits").experiment_id
    runs = client.search_runs([experiment], max_results=100)
    assert runs and not [r.info.run_name for r in runs if r.info.status == "RUNNING"]  # they used to stay RUNNING
    assert all(r.data.tags.get("ovatune.outcome") in ("interrupted", "completed") for r in runs)
    assert client.search_registered_models() == []  # nothing half-trained promoted

    ballast.unlink()  # space freed
    in_process(*shlex.split(command)[1:], check=True)
    runs = client.search_runs([experiment], "tags.`ovatune.kind` = 'trial'", max_results=100)
    assert sorted(r.info.run_name for r in runs) == sorted(f"{loss}-trial-00{n}" for loss in ("softmax", "ova")
                                                           for n in range(2))  # fmt: skip
    for run in runs:  # it used to lose 3 epochs for good
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy"))
        assert steps == list(range(1, EPOCHS + 1)), (run.info.run_name, steps)
        assert run.info.status == "FINISHED" and run.data.tags["ovatune.outcome"] == "completed"
    for loss in ("softmax", "ova"):
        assert client.get_model_version_by_alias(f"ovatune-digits-{loss}", "champion").tags["sweep"] == "full"
    assert not list((small_home / "ray_results").glob(".*.reserve"))  # the reserve goes with the job
