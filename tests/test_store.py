"""``tuning.store``: a tracking URI MLflow cannot use, a server that does not answer, a SQLite store
truncated, foreign or locked: each one error line before Ray starts; a fresh store created once
when two commands start together. (Credentials and permissions on a real server: test_tracking_server_auth.)"""

import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
from mlflow.tracking import MlflowClient

from tuning.cli import main
from tuning.store import empty_store_template, prepare_store

from launch import free_port


def test_unreachable_tracking_server_fails_fast(capsys, home):
    started = time.time()
    code = main(["sweep", "digits", "--tracking-uri", f"http://127.0.0.1:{free_port()}"])
    assert code == 2 and time.time() - started < 10
    err = capsys.readouterr().err
    assert "cannot reach the MLflow tracking server" in err and "--tracking-uri" in err
    assert not ray.is_initialized()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("htp:/nowhere", "--tracking-uri 'htp:/nowhere': unknown scheme 'htp'; use sqlite:///PATH"),
        ("foo://bar", "unknown scheme 'foo'"),
        (
            "{tmp}/mlflow.db",
            "'{tmp}/mlflow.db' is a file path, not a tracking URI (MLflow's file store is retired): "
            "use sqlite:///{tmp}/mlflow.db",
        ),  # fmt: skip
        ("file://{tmp}/mlruns", "is a file path, not a tracking URI"),
        ("sqlite+nosuchdriver:///{tmp}/x.db", "names a database driver SQLAlchemy does not know"),
        ("mysql://u@127.0.0.1/db", "needs a Python database driver that is not installed (No module named 'MySQLdb')"),
        (
            "postgresql+psycopg2://postgres@127.0.0.1:5432/ovatune_no_such_db",
            "cannot connect to the tracking database postgresql+psycopg2://postgres@127.0.0.1:5432/ovatune_no_such_db",
        ),
    ],
)
def test_a_tracking_uri_mlflow_cannot_use_is_one_error_line(uri, message, capsys, home, tmp_path):
    started = time.time()
    assert main(["evaluate", "digits", "--tracking-uri", uri.format(tmp=tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ovatune: error: ") and len(err.strip().splitlines()) == 1, err
    assert message.format(tmp=tmp_path) in err and time.time() - started < 30


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "is not a usable SQLite database ((sqlite3.DatabaseError) database disk image is malformed)"),
        (b"not a database at all\n" * 100, "is not a usable SQLite database ((sqlite3.DatabaseError) file is not a"),
    ],
)
def test_a_truncated_or_foreign_mlflow_db_is_one_error_line(content, message, capsys, home):
    from mlflow.tracking import MlflowClient

    db = home / "mlflow.db"
    home.mkdir(parents=True)
    MlflowClient(f"sqlite:///{db}").create_experiment("digits")  # a real store, then cut short
    db.write_bytes(content if content is not None else db.read_bytes()[: db.stat().st_size // 3])
    assert main(["evaluate", "digits"]) == 1
    # MLflow logs its creation of the store above when it is the process's first: the test's own set-up
    lines = [line for line in capsys.readouterr().err.strip().splitlines() if "mlflow.store.db.utils" not in line]
    assert len(lines) == 1, lines
    assert (
        lines[0].startswith(f"ovatune: error: the MLflow store {db} {message}")
        and "restore it from a backup" in lines[0]
    )


def test_a_locked_mlflow_db_says_so(capsys, home):
    import sqlite3

    from mlflow.tracking import MlflowClient

    home.mkdir(parents=True)
    db = home / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    holder = sqlite3.connect(db, isolation_level=None)  # another writer holding the database
    holder.execute("BEGIN EXCLUSIVE")
    try:
        assert main(["evaluate", "digits"]) == 1
    finally:
        holder.close()
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after MLflow's own log of creating the store above
    assert err.startswith(f"ovatune: error: the MLflow store {db} is locked by another process") and "wait for" in err


def _prepare(uri: str, start, errors) -> None:
    start.wait()
    try:
        prepare_store(uri)
    except Exception as error:  # noqa: BLE001 - reported to the test
        errors.put(f"{type(error).__name__}: {error}")


def test_two_commands_on_a_fresh_home_create_its_store_once(tmp_path):
    """Without the lock the two processes both run MLflow's migrations and one fails."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    context = multiprocessing.get_context("spawn")
    start, errors = context.Event(), context.Queue()
    processes = [context.Process(target=_prepare, args=(uri, start, errors)) for _ in range(2)]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(120)
    assert [p.exitcode for p in processes] == [0, 0] and errors.empty()
    assert [e.name for e in MlflowClient(uri).search_experiments()] == ["Default"]


def test_a_new_store_is_a_copy_of_a_migrated_empty_one_and_runs_no_migration(tmp_path, monkeypatch, caplog):
    """MLflow's migrations of a new SQLite store took about a second of every new home's first command."""
    import sqlite3

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first, second = tmp_path / "first" / "mlflow.db", tmp_path / "second" / "mlflow.db"
    for db in (first, second):
        db.parent.mkdir()
    prepare_store(f"sqlite:///{first}")  # makes the template, once per machine and MLflow version
    template = empty_store_template()
    assert template.parent == tmp_path / "cache" / "ovatune" and template.exists()
    # The second store is made by a new process, as each ovatune command is one. (In this process,
    # after a test that started and stopped an in-process Ray, MLflow migrated the copy: seen in CI,
    # cause not found yet.)
    made = subprocess.run([sys.executable, "-c", f"from tuning.store import prepare_store; prepare_store('sqlite:///{second}')"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(Path.cwd())})  # fmt: skip
    assert made.returncode == 0, made.stderr[-2000:]
    assert "Creating initial MLflow database tables" not in made.stderr, made.stderr[-2000:]  # no migration ran

    def revision(db) -> str:
        with sqlite3.connect(db) as connection:
            return connection.execute("SELECT version_num FROM alembic_version").fetchone()[0]

    assert revision(second) == revision(first)  # the schema MLflow's own creation gives
    client = MlflowClient(f"sqlite:///{second}")
    default = client.get_experiment("0")  # made by MLflow on first use, for this store
    assert default.name == "Default" and default.artifact_location.endswith("mlruns/0")
    run = client.create_run(client.create_experiment("digits"))
    client.log_metric(run.info.run_id, "val_accuracy", 0.5)
    client.create_registered_model("ovatune-digits-softmax")
    assert client.get_run(run.info.run_id).data.metrics == {"val_accuracy": 0.5}


def test_a_bad_template_is_replaced_and_the_store_made_by_mlflow(tmp_path, monkeypatch):
    """A template cut short (a full disk when it was made) must not break every new home after it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    template = empty_store_template()
    template.write_bytes(b"SQLite format 3\0 cut short")
    prepare_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert [e.name for e in MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()] == ["Default"]
    assert not template.exists()  # removed: the next new store makes it again
    assert not list(tmp_path.glob(".mlflow.db.*"))  # no copy left half-made beside the store


def test_without_a_writable_cache_mlflow_creates_the_store_itself(tmp_path, monkeypatch):
    (tmp_path / "cache").write_text("a file, not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    prepare_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert [e.name for e in MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()] == ["Default"]


def test_a_store_from_the_environment_is_named_as_the_environment(capsys, home, monkeypatch, tmp_path):
    """It used to blame --tracking-uri, which the user never gave."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"{tmp_path}/mlflow.db")
    assert main(["evaluate", "digits"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"ovatune: error: MLFLOW_TRACKING_URI '{tmp_path}/mlflow.db' is a file path")
        and "--tracking" not in err
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    assert main(["evaluate", "digits"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the MLflow tracking server" in err and "unset MLFLOW_TRACKING_URI to use the local" in err
