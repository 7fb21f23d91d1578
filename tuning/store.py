"""The MLflow store before a command writes to it: a URI MLflow can use, a server that answers and
takes these credentials and lets this user write, a SQLite file created and migrated once.

Each check fails with :class:`TrackingUnavailable` and a message that says what to do, before Ray
starts (``tuning.cli`` runs them for every command that writes), instead of MLflow's retries for
minutes or a raw HTTP error after the first trial.
"""

from __future__ import annotations

import contextlib
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from mlflow.tracking import MlflowClient

from trainables.cache import cache_folder, scratch_beside
from tuning.settings import redact

DATABASES = ("sqlite", "postgresql", "mysql", "mssql")  # SQLAlchemy back ends MLflow stores runs in


class TrackingUnavailable(RuntimeError):
    """The tracking store cannot be reached or written."""


def check_tracking_uri(uri: str, timeout_s: float = 5.0, named: str = "--tracking-uri") -> None:
    """Fail fast, with a message saying what to do, when the tracking store is unusable. ``named``:
    where the URI came from, as the messages name it (``--tracking-uri`` or ``MLFLOW_TRACKING_URI``).

    Raises:
        TrackingUnavailable: a URI MLflow cannot use (a file path, an unknown scheme, a database
            whose Python driver is missing), an HTTP server that does not answer its health check,
            or a SQLite file whose directory cannot be created.
    """
    scheme = urlsplit(uri).scheme.lower()
    if not scheme or scheme == "file":
        path = uri.removeprefix("file://")
        hint = f"sqlite:///{Path(path).expanduser().absolute()}" if path.endswith(".db") else "sqlite:///PATH/mlflow.db"
        raise TrackingUnavailable(
            f"{named} {uri!r} is a file path, not a tracking URI (MLflow's file store is retired): "
            f"use {hint}, a database URI (postgresql+psycopg2://...) or an MLflow server's http(s)://HOST:PORT"
        )
    database = scheme.split("+")[0]
    if scheme not in ("http", "https", "databricks") and database not in DATABASES:
        raise TrackingUnavailable(
            f"{named} {redact(uri)!r}: unknown scheme {scheme!r}; use sqlite:///PATH, "
            f"{', '.join(d + '://...' for d in DATABASES if d != 'sqlite')} or http(s)://HOST:PORT of an MLflow server"
        )
    if database in DATABASES:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            make_url(uri).get_dialect().import_dbapi()
        except NoSuchModuleError as error:
            raise TrackingUnavailable(f"{named} {redact(uri)!r} names a database driver SQLAlchemy does "
                                      f"not know ({error})") from None  # fmt: skip
        except (ArgumentError, ValueError) as error:
            raise TrackingUnavailable(f"{named} {redact(uri)!r} is not a valid database URI: {error}") from None
        except ImportError as error:
            raise TrackingUnavailable(
                f"the tracking store {redact(uri)} needs a Python database driver that is not installed "
                f"({error}): install it (e.g. pip install psycopg2-binary and use postgresql+psycopg2://...)"
            ) from None
        if database != "sqlite":  # a server: MLflow would retry a failed connection for minutes
            _check_database(uri, timeout_s, named)
    if uri.startswith(("http://", "https://")):
        shown = redact(uri)  # never print a secret (resolve_settings already moved user:password@ out)
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s) as response:
                if response.status != 200:
                    raise TrackingUnavailable(f"{shown}/health answered HTTP {response.status}")
        except (urllib.error.URLError, OSError) as error:
            raise TrackingUnavailable(
                f"cannot reach the MLflow tracking server at {shown} ({error}). Start it "
                f"(`mlflow server --host 127.0.0.1 ...`) or {_leave_out(named)} to use the "
                "local SQLite store in the ovatune home."
            ) from None
        _check_credentials(uri, timeout_s)
    elif uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise TrackingUnavailable(f"cannot create the MLflow store at {path}: {error}") from None


def tracking_user() -> str | None:
    """The user MLflow sends to a tracking server: MLFLOW_TRACKING_USERNAME, else ~/.mlflow/credentials."""
    from mlflow.utils.credentials import read_mlflow_creds

    return read_mlflow_creds().username or None


def _check_credentials(uri: str, timeout_s: float) -> None:
    """One authenticated request, so that a server behind MLflow's basic auth that refuses these
    credentials (or wants some) is one clear error now, before Ray starts, instead of a failure
    after the first trial. Names the server and the user, never the password.

    Raises:
        TrackingUnavailable: the server answered 401.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        response = http_request(get_default_host_creds(uri), "/api/2.0/mlflow/experiments/search", "GET",
                                max_retries=0, timeout=int(timeout_s) + 1, params={"max_results": 1})  # fmt: skip
    except (MlflowException, OSError):  # it answered its health check: later calls say what is wrong
        return
    if response.status_code != 401:
        return
    user = tracking_user()
    problem = f"refused user {user!r}: wrong user name or password" if user else "needs a user name and password"
    raise TrackingUnavailable(
        f"the MLflow server {redact(uri)} {problem}; set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, "
        "write them to ~/.mlflow/credentials, or pass --tracking-uri http://USER:PASSWORD@HOST:PORT "
        "(README: team servers)"
    )


# What each permission of MLflow's basic-auth app allows, weakest first (mlflow.server.auth.permissions)
PERMISSION_ORDER = ("DENY", "NO_PERMISSIONS", "READ", "USE", "EDIT", "MANAGE")


def write_denied(uri: str, experiment: str, models: list[str]) -> str | None:
    """Why this user may not write what a sweep or an evaluation records (the experiment's runs,
    the registered models' versions and aliases) on an MLflow server with basic auth, or None.

    Asks the server for the user's own grants (``/api/3.0/mlflow/users/current/permissions``).
    A store without auth, an admin, a resource that does not exist yet (its creator gets MANAGE)
    or one without an explicit grant (the server's default_permission applies, which a client
    cannot see) is not denied here: for those the server's answer is the check.
    """
    if not uri.startswith(("http://", "https://")):
        return None
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    creds = get_default_host_creds(uri)
    response = http_request(creds, "/api/3.0/mlflow/users/current/permissions", "GET", max_retries=0, timeout=10)
    if response.status_code != 200:  # 404: no auth app on this server
        return None
    grants = response.json()
    if grants.get("is_admin"):
        return None
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    targets = [("experiment", found.experiment_id, f"experiment {experiment!r}")] if found else []
    targets += [("registered_model", name, f"registered model {name!r}") for name in models]

    def granted(resource_type: str, resource_id: str) -> str | None:
        levels = [g["permission"] for g in grants.get("permissions", [])
                  if g["resource_type"] == resource_type and g["resource_pattern"] in (resource_id, "*")]  # fmt: skip
        if not levels:
            return None
        return "DENY" if "DENY" in levels else max(levels, key=PERMISSION_ORDER.index)

    short = [(what, level) for kind, resource_id, what in targets
             if (level := granted(kind, resource_id)) and PERMISSION_ORDER.index(level) < PERMISSION_ORDER.index("EDIT")]  # fmt: skip
    if not short:
        return None
    held = ", ".join(f"{level} on {what}" for what, level in short)
    return (
        f"user {tracking_user()!r} has {held} on the MLflow server {redact(uri)}, and recording runs, model "
        "versions or @champion needs EDIT; ask a user with MANAGE on them (or the server's admin) to grant it"
    )


def permission_denied(error: BaseException) -> bool:
    """Whether ``error`` is an MLflow server's refusal (HTTP 403) of what this user asked."""
    from mlflow.exceptions import MlflowException

    return isinstance(error, MlflowException) and error.error_code == "PERMISSION_DENIED"


def _leave_out(named: str) -> str:
    return f"unset {named}" if named.isupper() else f"leave out {named}"


def _check_database(uri: str, timeout_s: float, named: str) -> None:
    """Connect once to a database tracking store, so that a wrong host, database or password is one
    clear error now instead of MLflow's retries.

    Raises:
        TrackingUnavailable: naming the (redacted) URI and the database's own reason.
    """
    import sqlalchemy

    arguments = {"connect_timeout": int(timeout_s)} if uri.startswith(("postgresql", "mysql")) else {}
    engine = sqlalchemy.create_engine(uri, connect_args=arguments, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.SQLAlchemyError as error:
        reason = _without_sql(" ".join(str(getattr(error, "orig", None) or error).split()))
        raise TrackingUnavailable(
            f"cannot connect to the tracking database {redact(uri)}: {reason[:300]}; check the host, the database "
            f"name and the credentials in {named}"
        ) from None
    finally:
        engine.dispose()


@contextlib.contextmanager
def one_at_a_time(uri: str, what: str) -> Iterator[None]:
    """Hold ``<store file>.<what>.lock`` (``flock``) where ``uri`` is a local SQLite store, for a read
    and then a write of the store that another ovatune process on this machine must not interleave
    with (two sweeps in one home: the champion contest). A server's store has no such lock: there,
    whoever reads and writes copes with having been overtaken."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    with open(f"{uri.removeprefix('sqlite:///')}.{what}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the kernel releases it if this process dies
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def prepare_store(uri: str) -> None:
    """Create (or migrate) a local SQLite store under a file lock.

    Two ovatune commands started together on a fresh home would otherwise both run MLflow's schema
    migrations on the same file, and one fails ("duplicate column name"). The second waits for the
    lock and then finds the schema in place. Servers migrate their own stores.
    """
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri.removeprefix("sqlite:///"))
    try:
        with one_at_a_time(uri, "schema"):
            if not path.exists() or path.stat().st_size == 0:
                _copy_empty_store(path)
            MlflowClient(uri).search_experiments(max_results=1)  # the store's first use migrates it
    except Exception as error:  # noqa: BLE001 - sqlite3, SQLAlchemy and MLflow each raise their own kind
        raise TrackingUnavailable(_sqlite_problem(path, error)) from None


def empty_store_template() -> Path:
    """An empty SQLite store with this MLflow's schema, made once per machine and MLflow version in the
    user's cache folder (``$XDG_CACHE_HOME/ovatune``, else ``~/.cache/ovatune``).

    Why: MLflow migrates a new SQLite store through every schema revision since its first, about a
    second, and every new home (every smoke test, every test) paid it; copying a migrated empty
    store takes milliseconds. The template has no Default experiment: MLflow makes it when it first
    opens the copy, with that store's own artifact location, as it would have.
    """
    import sqlite3

    import mlflow

    cache = cache_folder()
    template = cache / f"mlflow-{mlflow.__version__}-empty-store.db"
    if template.exists():
        return template
    cache.mkdir(parents=True, exist_ok=True)
    scratch = scratch_beside(template)  # made aside, then renamed: another process may race
    MlflowClient(f"sqlite:///{scratch}").search_experiments(max_results=1)
    with contextlib.closing(sqlite3.connect(scratch)) as db, db:
        db.execute("DELETE FROM experiments WHERE experiment_id = 0")
    os.replace(scratch, template)
    return template


def _intact(store: Path) -> bool:
    """Whether the SQLite file ``store`` is whole and has a migrated schema."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
            whole = db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            return whole and db.execute("SELECT version_num FROM alembic_version").fetchone() is not None
    except sqlite3.Error:
        return False


def _copy_empty_store(path: Path) -> bool:
    """Start the new SQLite store ``path`` as a copy of :func:`empty_store_template` (whole or not at
    all: copied aside, then renamed); False where that cannot be done (no writable cache folder, a
    full disk): MLflow then creates the store itself, as before."""
    import shutil

    scratch = None
    try:
        template = empty_store_template()
        if not _intact(template):  # cut short (a full disk when it was made): made again next time
            template.unlink()
            return False
        scratch = scratch_beside(path)
        shutil.copyfile(template, scratch)
        os.replace(scratch, path)
        return True
    except Exception:  # noqa: BLE001 - the slow way still works
        if scratch is not None:
            scratch.unlink(missing_ok=True)
        return False


def _without_sql(text: str) -> str:
    """A SQLAlchemy error's message without the statement and the link it appends."""
    return re.split(r" \[SQL: | \(Background on this error", text)[0]


def _sqlite_problem(path: Path, error: BaseException) -> str:
    """What is wrong with the SQLite store at ``path``, and what to do, from the error opening it."""
    text = " ".join(str(error).split())
    cause = _without_sql(text)[:300]
    if "locked" in text:
        return (f"the MLflow store {path} is locked by another process ({cause}); wait for it to finish, or stop "
                "it (`fuser` names it), then run the command again")  # fmt: skip
    if "readonly" in text or "read-only" in text or isinstance(error, PermissionError) or "unable to open" in text:
        return (f"cannot write the MLflow store {path} ({cause}): the folder or file is read-only; pass --home "
                "(or OVATUNE_HOME) a writable folder, or --tracking-uri another store")  # fmt: skip
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return (f"the MLflow store {path} is not a usable SQLite database ({cause}): it is truncated or corrupted; "
                f"restore it from a backup, or move it away to start a new store there")  # fmt: skip
    return f"cannot open the MLflow store {path}: {type(error).__name__}: {cause}"
