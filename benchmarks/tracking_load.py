"""Load on the tracking store: 16 trial-like writer processes logging metrics for 60 s.

Each writer opens a run and logs batches of 8 metrics per step (what a trial logs per epoch), as fast
as the store takes them. It counts the points the store acknowledged, and the calls that failed.
Afterwards every run's metric history is read back. Points lost = acknowledged − stored; it must be 0.
Two stores are measured:

- an `mlflow server` on 127.0.0.1 backed by PostgreSQL (a fresh database on this machine's server,
  through its Unix socket), with 4 workers: the team set-up;
- the SQLite file that ovatune uses by default, written by the 16 processes directly.

    python benchmarks/tracking_load.py [--writers 16] [--seconds 60]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

BIN = Path(sys.executable).parent
PG_SOCKET = "/var/run/postgresql"
KEYS = ["train_loss", "train_accuracy", "val_accuracy", "val_nll", "val_ece", "learning_rate", "fit_time_s", "epoch"]


def writer(uri: str, experiment_id: str, index: int, seconds: float, results) -> None:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    run = client.create_run(experiment_id, run_name=f"writer-{index:02d}")
    acknowledged, failed, step, errors = 0, 0, 0, set()
    deadline = time.time() + seconds
    while time.time() < deadline:
        now = int(time.time() * 1000)
        metrics = [Metric(key, float(step), now, step) for key in KEYS]
        try:
            client.log_batch(run.info.run_id, metrics=metrics)
            acknowledged += len(metrics)
            step += 1
        except Exception as error:  # count it, keep going, as a trial would
            failed += 1
            errors.add(type(error).__name__ + ": " + str(error).splitlines()[0][:120])
    results.put((run.info.run_id, acknowledged, failed, sorted(errors)))


def measure(uri: str, writers: int, seconds: float) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment_id = client.create_experiment(f"load-{uuid.uuid4().hex[:8]}")
    results = multiprocessing.get_context("spawn").Queue()
    processes = [multiprocessing.get_context("spawn").Process(target=writer, args=(uri, experiment_id, i, seconds, results))
                 for i in range(writers)]  # fmt: skip
    started = time.time()
    for p in processes:
        p.start()
    outcomes = [results.get(timeout=seconds + 300) for _ in processes]
    for p in processes:
        p.join()
    elapsed = time.time() - started
    acknowledged = sum(o[1] for o in outcomes)
    failed = sum(o[2] for o in outcomes)
    stored = sum(len(client.get_metric_history(o[0], key)) for o in outcomes for key in KEYS)
    errors = sorted({e for o in outcomes for e in o[3]})
    print(f"  {writers} writers x {seconds:.0f} s: {acknowledged:,} points acknowledged "
          f"({acknowledged / elapsed:,.0f} points/s, {acknowledged / len(KEYS) / elapsed:,.0f} batches/s)")  # fmt: skip
    print(f"  stored {stored:,}; lost {acknowledged - stored:,}; failed calls {failed:,}")
    for error in errors[:5]:
        print(f"    failure: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    print("command: python " + " ".join(sys.argv))
    import psycopg2

    scratch = Path(tempfile.mkdtemp())
    database = f"ovatune_load_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(host=PG_SOCKET, user="postgres", dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{database}"')
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", f"postgresql+psycopg2://postgres@/{database}?host={PG_SOCKET}",
         "--artifacts-destination", (scratch / "artifacts").as_uri(), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "4"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(180):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                time.sleep(1)
        print("\nmlflow server (4 workers) on PostgreSQL:")
        measure(f"http://127.0.0.1:{port}", args.writers, args.seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)
        admin.cursor().execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,))
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{database}"')
    print("\nSQLite file, written by every writer directly:")
    sqlite = f"sqlite:///{scratch / 'mlflow.db'}"
    from mlflow.tracking import MlflowClient

    MlflowClient(sqlite).search_experiments()  # create the schema once, before the writers race for it
    measure(sqlite, args.writers, args.seconds)


if __name__ == "__main__":
    main()
