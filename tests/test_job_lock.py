"""``tuning.job_lock``: one driver per job. Real processes hold and contend for the lock; a real
``ovatune sweep`` runs while a second driver of it is refused."""

import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from tuning.job_lock import JobLocked, lock_job, release_job

from launch import run_ovatune, start_ovatune

HOLD = """
import sys, time
from pathlib import Path
from tuning.job_lock import lock_job
lock_job(Path(sys.argv[1]), "s", "sweep")
print("held", flush=True)
time.sleep(60)
"""


def _holder(ray_results) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(ray_results)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_the_lock_names_its_holder_and_dies_with_it(tmp_path):
    holder = _holder(tmp_path)
    try:
        with pytest.raises(JobLocked, match=rf"sweep 's' is being run by another ovatune \(pid {holder.pid} on "):
            lock_job(tmp_path, "s", "sweep")
    finally:
        holder.send_signal(signal.SIGKILL)  # no clean-up: the kernel releases the flock
        holder.wait()
    lock_job(tmp_path, "s", "sweep")  # free again
    lock_job(tmp_path, "s", "sweep")  # held by this process already: nothing to do
    release_job(tmp_path, "s")
    holder = _holder(tmp_path)  # released: another process takes it
    holder.send_signal(signal.SIGKILL)
    holder.wait()


@pytest.mark.slow
def test_a_second_driver_of_a_running_sweep_is_refused_in_one_line(home):
    args = ["sweep", "digits", "--losses", "softmax", "--trials", "2", "--epochs", "500", "--name", "busy"]
    first = start_ovatune(
        *args, home=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.time() + 300
        busy = home / "ray_results" / "busy"
        while not (list(busy.glob("*/result.json")) and list(busy.glob("experiment_state-*.json"))):  # running
            assert time.time() < deadline and first.poll() is None, "the sweep ended before the second driver"
            time.sleep(0.2)
        client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
        runs = {r.info.run_id for r in client.search_runs([client.get_experiment_by_name("digits").experiment_id])}
        second = run_ovatune("sweep", "digits", "--resume", "--name", "busy", home=home, timeout=120)
        assert first.poll() is None  # the first one was not disturbed
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
    (line,) = [line for line in second.stderr.splitlines() if line.strip()]
    assert line.startswith(f"ovatune: error: sweep 'busy' is being run by another ovatune (pid {first.pid} on ")
    assert "ray started" not in second.stdout and "Traceback" not in second.stderr
    after = {r.info.run_id for r in client.search_runs([client.get_experiment_by_name("digits").experiment_id])}
    assert after - runs == set()  # the refused driver recorded nothing
    lock_job(home / "ray_results", "busy", "sweep")  # the killed driver left no lock behind
    release_job(home / "ray_results", "busy")
