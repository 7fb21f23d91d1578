"""A team's MLflow server on PostgreSQL: a real `mlflow server` process on 127.0.0.1, backed by a fresh
database of the machine's PostgreSQL (reached through its Unix socket), and a sweep against it.

Also: passwords given for the tracking server (in the URI or MLflow's environment variables) never
reach the output, the logged params or the tags.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from trainables.methods import METHODS
from tuning.settings import redact

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
PG_SOCKET = "/var/run/postgresql"
URI_SECRET, ENV_SECRET = "uri-secret-5f1c", "env-secret-93ab"


def test_redact_masks_passwords_and_tokens():
    assert redact(f"http://alice:{URI_SECRET}@127.0.0.1:5000") == "http://alice:***@127.0.0.1:5000"
    assert redact("postgresql://u:pw@/db?host=/run/pg&password=x") == "postgresql://u:***@/db?host=/run/pg&password=***"
    assert redact("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sweep_against_an_mlflow_server_on_postgresql(database, tmp_path):
    import psycopg2

    port = _free_port()
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    backend = f"postgresql+psycopg2://postgres@/{database}?host={PG_SOCKET}"
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", backend, "--artifacts-destination",
         (tmp_path / "artifacts").as_uri(), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=clean_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                assert time.time() < deadline, "mlflow server on PostgreSQL did not start"
                time.sleep(1)

        environment = {**clean_env, "MLFLOW_TRACKING_USERNAME": "ovatune", "MLFLOW_TRACKING_PASSWORD": ENV_SECRET}
        uri = f"http://ovatune:{URI_SECRET}@127.0.0.1:{port}"
        result = subprocess.run(
            [str(BIN / "ovatune"), "run", "digits", "--smoke-test", "--tracking-uri", uri, "--home", str(tmp_path / "h")],
            env=environment, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-3000:]
        assert URI_SECRET not in output and ENV_SECRET not in output
        assert f"MLflow store http://127.0.0.1:{port}" in output  # the credentials went to MLflow's env

        client = MlflowClient(f"http://127.0.0.1:{port}")
        experiment = client.get_experiment_by_name("digits")
        runs = client.search_runs([experiment.experiment_id], max_results=1000)
        kinds = sorted(r.data.tags["ovatune.kind"] for r in runs)
        assert kinds == ["evaluation"] + ["parent"] * 4 + ["trial"] * 4
        for run in runs:
            logged = " ".join([*run.data.params.values(), *run.data.tags.values()])
            assert URI_SECRET not in logged and ENV_SECRET not in logged
        for loss in METHODS:
            version = client.get_model_version_by_alias(f"ovatune-digits-{loss}", "champion")
            assert (version.description or "").startswith("# Model card")

        # and it all lives in PostgreSQL
        with psycopg2.connect(host=PG_SOCKET, user="postgres", dbname=database) as connection:
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM runs")
                assert cursor.fetchone()[0] == 9
                cursor.execute("SELECT count(*) FROM registered_models")
                assert cursor.fetchone()[0] == 4
    finally:
        server.terminate()
        server.wait(timeout=30)
