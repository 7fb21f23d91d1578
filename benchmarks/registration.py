"""What promotion (registering each loss's best trial as a model version) costs against a team's MLflow
server, and where it goes: issue 37, item 3 (a basic-auth server once took about 22 s per registration).

Runs, in one sitting, one ``ovatune sweep digits --smoke-test --losses softmax,ova`` on a fresh home
with ``OVATUNE_TIMELINE`` set (``tuning/timeline.py``) against each store:

1. the default local SQLite store;
2. an ``mlflow server`` on 127.0.0.1 backed by a fresh PostgreSQL database (one worker);
3. the same behind MLflow's basic auth with its credential cache (``auth_cache_ttl_seconds = 60``,
   as the README and ``docker/compose.yaml`` configure it);
4. the same without the cache (MLflow's default, ``auth_cache_ttl_seconds = 0``): every request
   checks the password against its PBKDF2 hash again.

For each: promotion's seconds per loss (from "trials done" to "promoted", over the two losses), the
whole command's seconds, and, for the servers, the requests the server answered (from its access
log), the five most frequent endpoints with their counts.

    python benchmarks/registration.py          # about 4 minutes on 2 cores
"""

from __future__ import annotations

import collections
import os
import re
import secrets
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
LOSSES = "softmax,ova"
REQUEST = re.compile(r'"(GET|POST|PUT|PATCH|DELETE) (\S+?)(?:\?\S*)? HTTP')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fresh_database() -> str:
    import psycopg2

    name = f"ovatune_bench_{uuid.uuid4().hex[:10]}"
    connection = psycopg2.connect(host=PG_SOCKET, user="postgres", dbname="postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()
    return name


def drop_database(name: str) -> None:
    import psycopg2

    connection = psycopg2.connect(host=PG_SOCKET, user="postgres", dbname="postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
    connection.close()


def start_server(folder: Path, database: str, auth_cache_s: int | None) -> tuple[subprocess.Popen, str, dict]:
    """An mlflow server (behind basic auth unless ``auth_cache_s`` is None), its URI and the
    environment a user runs ovatune with (the admin's credentials, when behind auth)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    user_env = dict(env)
    options = []
    if auth_cache_s is not None:
        password = secrets.token_hex(12)
        config = folder / "auth.ini"
        config.write_text(
            "[mlflow]\ndefault_permission = NO_PERMISSIONS\n"
            f"database_uri = sqlite:///{folder / 'auth.db'}\nadmin_username = admin\nadmin_password = {password}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            f"auth_cache_ttl_seconds = {auth_cache_s}\n"
        )
        env |= {"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16)}
        user_env |= {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": password}
        options = ["--app-name", "basic-auth"]
    log = open(folder / "server.log", "w")
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", *options, "--backend-store-uri",
         f"postgresql+psycopg2://postgres@/{database}?host={PG_SOCKET}", "--artifacts-destination",
         (folder / "artifacts").as_uri(), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return server, f"http://127.0.0.1:{port}", user_env
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                raise SystemExit(f"mlflow server did not start; see {folder / 'server.log'}") from None
            time.sleep(0.5)


def sweep(home: Path, uri: str | None, env: dict) -> tuple[float, float]:
    """(promotion's seconds per loss, the command's seconds) of one smoke sweep."""
    home.mkdir(parents=True, exist_ok=True)
    timeline = home / "timeline.txt"
    command = [str(BIN / "ovatune"), "sweep", "digits", "--smoke-test", "--losses", LOSSES, "--home", str(home)]
    command += ["--tracking-uri", uri] if uri else []
    started = time.time()
    done = subprocess.run(command, capture_output=True, text=True, env={**env, "OVATUNE_TIMELINE": str(timeline)})
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    took = time.time() - started
    marks = {}
    for line in timeline.read_text().splitlines():
        at, phase = line.split(" ", 1)
        marks[phase] = float(at)  # the last of each
    return (marks["promoted"] - marks["trials done"]) / len(LOSSES.split(",")), took


def requests_of(log: Path) -> collections.Counter:
    """Requests per endpoint in a server's access log (uvicorn's lines)."""
    return collections.Counter(f"{m[1]} {m[2]}" for m in REQUEST.finditer(log.read_text(errors="replace")))


def main() -> None:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    rows = []
    with tempfile.TemporaryDirectory(prefix="ovatune-registration-") as scratch:
        root = Path(scratch)
        per_loss, took = sweep(root / "local", None, base_env)
        rows.append(("local SQLite", per_loss, took, None))
        for label, cache in (("server on PostgreSQL", None), ("basic auth, cache 60 s", 60),
                             ("basic auth, no cache", 0)):  # fmt: skip
            folder = root / label.replace(" ", "-").replace(",", "")
            folder.mkdir()
            database = fresh_database()
            server, uri, env = start_server(folder, database, cache)
            try:
                per_loss, took = sweep(folder / "home", uri, env)
            finally:
                server.terminate()
                server.wait(timeout=60)
                drop_database(database)
            rows.append((label, per_loss, took, requests_of(folder / "server.log")))
    print(f"\n`ovatune sweep digits --smoke-test --losses {LOSSES}` per store (python benchmarks/registration.py):")
    print(f"  {'store':<24} {'promotion per loss':>19} {'command':>9} {'requests':>9}")
    for label, per_loss, took, requests in rows:
        count = sum(requests.values()) if requests is not None else "-"
        print(f"  {label:<24} {per_loss:>17.2f} s {took:>7.1f} s {count:>9}")
    for label, _, _, requests in rows[1:2]:
        print(f"\n  the most frequent requests ({label}):")
        for endpoint, count in requests.most_common(5):
            print(f"    {count:>5}  {endpoint}")


if __name__ == "__main__":
    main()
