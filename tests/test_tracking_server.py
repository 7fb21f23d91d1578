"""A team's MLflow server: a real `mlflow server` process on 127.0.0.1 that goes away mid-sweep, and
the helpers that start one on a fresh database of the machine's PostgreSQL (reached through its Unix
socket). The whole pipeline against a server on PostgreSQL, behind MLflow's basic auth, keeping its
artifacts in a bucket, is ``test_tracking_server_auth.py``'s team test.
"""

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from launch import free_port, start_ovatune, stop_group

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
PG_SOCKET = "/var/run/postgresql"


@pytest.fixture
def database():
    """A fresh PostgreSQL database, dropped afterwards."""
    import psycopg2

    name = f"ovatune_test_{uuid.uuid4().hex[:10]}"
    connection = psycopg2.connect(host=PG_SOCKET, user="postgres", dbname="postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.close()


def _start_server(backend: str, artifacts: Path | str, port: int, *options: str, env: dict[str, str] | None = None
                  ) -> subprocess.Popen:  # fmt: skip
    """``mlflow server`` on 127.0.0.1:``port`` (``artifacts``: a folder, or a URI such as ``s3://bucket``;
    ``options``: more of its flags, e.g. ``--app-name``; ``env``: more environment, over one without
    MLflow's variables), returned once /health answers."""
    # without MLflow's variables, and without MLflow 3's job consumers (for GenAI jobs), as the team
    # server of docker/compose.yaml runs: 8 processes that took 27 CPU s in their first 15 s here
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    clean_env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", *options, "--backend-store-uri", backend, "--artifacts-destination",
         artifacts if isinstance(artifacts, str) else artifacts.as_uri(), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env={**clean_env, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return server
        except OSError:
            assert time.time() < deadline and server.poll() is None, "mlflow server did not start"
            time.sleep(0.5)


def test_a_sweep_rides_out_a_tracking_server_restart(tmp_path):
    """The server goes away mid-sweep and comes back 10 s later: the sweep finishes and no metric is
    lost. MLflow's client retries with exponential back-off (MLFLOW_HTTP_REQUEST_MAX_RETRIES, default
    7; MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR, default 2), and ovatune logs metrics asynchronously."""
    port = free_port()
    backend = f"sqlite:///{tmp_path / 'server.db'}"
    server = _start_server(backend, tmp_path / "artifacts", port)
    uri = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    sweep = start_ovatune(
        "sweep", "digits", "--losses", "softmax,ova", "--trials", "2", "--epochs", "25", "--tracking-uri", uri,
        home=tmp_path / "home", env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        client = MlflowClient(uri)
        deadline = time.time() + 300
        while True:  # until some trial has logged a few epochs
            experiment = client.get_experiment_by_name("digits")
            trials = (
                client.search_runs([experiment.experiment_id], "tags.`ovatune.kind` = 'trial'") if experiment else []
            )
            if any(len(client.get_metric_history(t.info.run_id, "val_accuracy")) >= 3 for t in trials):
                break
            assert time.time() < deadline and sweep.poll() is None, "the sweep never logged 3 epochs"
            time.sleep(0.5)
        stop_group(server, timeout=30)
        time.sleep(10)
        assert sweep.poll() is None, "the sweep ended while the server was down: the outage proved nothing"
        server = _start_server(backend, tmp_path / "artifacts", port)
        output, _ = sweep.communicate(timeout=900)
        assert sweep.returncode == 0, output[-3000:]

        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("digits")
        trials = client.search_runs([experiment.experiment_id], "tags.`ovatune.kind` = 'trial'")
        assert len(trials) == 4 and all(t.info.status == "FINISHED" for t in trials)
        for trial in trials:
            steps = [m.step for m in client.get_metric_history(trial.info.run_id, "val_accuracy")]
            assert sorted(steps) == list(range(1, 26)), (trial.info.run_name, steps)
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
        stop_group(server, timeout=30)
