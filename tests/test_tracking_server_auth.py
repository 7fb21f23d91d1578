"""A team's MLflow server behind MLflow's basic auth: a real ``mlflow server --app-name basic-auth`` on
127.0.0.1, backed by a fresh PostgreSQL database, keeping artifacts in a bucket of an S3-compatible
server (``--artifacts-destination s3://…``, as docker/compose.yaml runs it), with an auth config (and
a generated admin password) written here, and users made with MLflow's own API.

Who can do what (README: team servers): a user who creates the experiment gets MANAGE on it and on the
models its sweep registers; EDIT is enough to sweep and move @champion; READ is enough to evaluate
with --no-record (measured and reported, not recorded) and export; no grant at all under ``default_permission =
NO_PERMISSIONS`` is nothing. Every password and the admin's appear in no output, file, param, tag,
model card or Ray log; the bucket's key is the server's alone.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from test_tracking_server import PG_SOCKET, _start_server, database  # noqa: F401 (database: a fixture)

from trainables.losses import LOSSES

from buckets import bucket_bytes, bucket_keys
from launch import free_port, run_ovatune, stop_group

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
# the users' shells: no MLflow settings, and no key to the server's bucket
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}


@contextmanager
def credentials(user: str, password: str):
    """This test process talks to the server as ``user`` (MLflow reads these variables per request)."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ.update(MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password)
    try:
        yield
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)


@pytest.fixture
def auth_server(database, s3_server, tmp_path):  # noqa: F811 (database is the fixture imported above)
    """(uri, {user: password}) of a basic-auth MLflow server; ``admin`` is its administrator. Its
    artifacts are under ``mlflow/`` in ``s3_server``'s bucket, whose key only the server has."""
    passwords = {
        user: f"pw-{user}-{secrets.token_hex(8)}" for user in ("admin", "alice", "bob", "carol", "dave", "eve", "frank")
    }
    config = tmp_path / "auth.ini"
    config.write_text(
        "[mlflow]\ndefault_permission = NO_PERMISSIONS\n"
        f"database_uri = sqlite:///{tmp_path / 'auth.db'}\n"
        f"admin_username = admin\nadmin_password = {passwords['admin']}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # without a cache every request re-hashes the password (PBKDF2, ~0.5 s here)
        "auth_cache_ttl_seconds = 60\n"
    )
    port = free_port()
    env = {"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16), **s3_server}
    backend = f"postgresql+psycopg2://postgres@/{database}?host={PG_SOCKET}"
    server = _start_server(backend, "s3://ovatune/mlflow", port, "--app-name", "basic-auth", env=env)
    uri = f"http://127.0.0.1:{port}"
    try:
        from mlflow.server import get_app_client

        with credentials("admin", passwords["admin"]):
            users = get_app_client("basic-auth", tracking_uri=uri)
            for user, password in passwords.items():
                if user != "admin":
                    users.create_user(user, password)
        yield uri, passwords
    finally:
        stop_group(server, timeout=30)


def grant(uri: str, passwords: dict[str, str], user: str, permission: str) -> None:
    """Give ``user`` ``permission`` on the digits experiment and its four registered models."""
    from mlflow.server import get_app_client

    with credentials("admin", passwords["admin"]):
        users = get_app_client("basic-auth", tracking_uri=uri)
        experiment = MlflowClient(uri).get_experiment_by_name("digits")
        users.grant_user_permission(user, "experiment", experiment.experiment_id, permission)
        for loss in LOSSES:
            users.grant_user_permission(user, "registered_model", f"ovatune-digits-{loss}", permission)


def as_user(user: str, password: str, **extra: str) -> dict[str, str]:
    return {**CLEAN_ENV, "MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password, **extra}


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ovatune: error:"), result.stderr[-3000:]
    return lines[0]


def test_a_team_on_an_authenticated_server(auth_server, database, s3_server, tmp_path):  # noqa: F811 (database)
    """Who can do what, from no credentials to MANAGE (the module's docstring), and also the whole
    pipeline against a server on PostgreSQL that keeps artifacts in a bucket: what it records, and
    that it is there. The pipeline writes through the server (promotion's models with
    their checkpoints, the evaluation's report, the model cards) and reads back through it (the
    evaluations load each champion, export downloads them)."""
    import psycopg2

    uri, passwords = auth_server
    ray_tmp = Path(tempfile.mkdtemp(prefix="ra", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    outputs: list[str] = []

    def ovatune(*args: str, env: dict[str, str], home: Path, timeout: float = 900) -> subprocess.CompletedProcess:
        result = run_ovatune(*args, home=home, env={**env, "RAY_TMPDIR": str(ray_tmp)}, timeout=timeout)
        outputs.append(result.stdout + result.stderr)
        return result

    # without credentials, or with a wrong password, nothing starts: one line that says why
    with pytest.raises(urllib.error.HTTPError) as refused:  # the server itself, to a client without credentials
        urllib.request.urlopen(f"{uri}/api/2.0/mlflow/experiments/search?max_results=1", timeout=10)
    assert refused.value.code == 401
    anonymous = ovatune("sweep", "digits", "--smoke-test", "--tracking-uri", uri, env=CLEAN_ENV,
                        home=tmp_path / "anonymous", timeout=120)  # fmt: skip
    assert anonymous.returncode == 2
    assert "needs a user name and password" in one_error_line(anonymous)
    wrong = "not-" + passwords["alice"]
    refused = ovatune("sweep", "digits", "--smoke-test", "--tracking-uri", uri, env=as_user("alice", wrong),
                      home=tmp_path / "anonymous", timeout=120)  # fmt: skip
    assert refused.returncode == 2
    line = one_error_line(refused)
    assert "refused user 'alice'" in line and uri in line
    assert wrong not in refused.stdout + refused.stderr
    assert not (tmp_path / "anonymous" / "ray_results").exists()  # refused before Ray or Tune started

    # alice (credentials in MLflow's environment variables) creates the experiment: the whole pipeline
    alice = ovatune("run", "digits", "--smoke-test", "--tracking-uri", uri,
                    env=as_user("alice", passwords["alice"]), home=tmp_path / "alice")  # fmt: skip
    assert alice.returncode == 0, alice.stdout[-3000:] + alice.stderr[-3000:]
    with credentials("admin", passwords["admin"]):
        admin = MlflowClient(uri)
        experiment = admin.get_experiment_by_name("digits")

        def runs_of(kind: str) -> list:
            return admin.search_runs([experiment.experiment_id], f"tags.`ovatune.kind` = '{kind}'", max_results=500)

        def champions() -> dict[str, str]:
            return {loss: admin.get_model_version_by_alias(f"ovatune-digits-{loss}", "champion").version
                    for loss in LOSSES}  # fmt: skip

        assert len(runs_of("trial")) == 4 and len(runs_of("evaluation")) == 1
        kinds = sorted(r.data.tags["ovatune.kind"] for r in admin.search_runs([experiment.experiment_id]))
        assert kinds == ["evaluation"] + ["parent"] * 4 + ["trial"] * 4
        for loss in LOSSES:
            version = admin.get_model_version_by_alias(f"ovatune-digits-{loss}", "champion")
            assert (version.description or "").startswith("# Model card")
        # the models MLflow serves from the bucket: their files there, the trained weights among them
        keys = bucket_keys(s3_server)
        for loss in LOSSES:
            champion = admin.get_model_version_by_alias(f"ovatune-digits-{loss}", "champion")
            served = admin.get_model_version_download_uri(f"ovatune-digits-{loss}", champion.version)
            assert served.startswith("mlflow-artifacts:"), served  # served by MLflow, not a path of the client's
            stored = [k for k in keys if k.startswith("mlflow/" + served.split(":", 1)[1].strip("/") + "/")]
            assert any(k.endswith("/MLmodel") for k in stored), (served, keys)
            assert any(k.endswith("/bundle/weights.pt") for k in stored), stored
            assert any(k.endswith(f"/{champion.run_id}/artifacts/model_card.md") for k in keys), keys
        (evaluation,) = runs_of("evaluation")
        assert any(k.endswith(f"/{evaluation.info.run_id}/artifacts/report.md") for k in keys), keys
    # and the rest lives in PostgreSQL
    with psycopg2.connect(host=PG_SOCKET, user="postgres", dbname=database) as connection:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM runs")
            assert cursor.fetchone()[0] == 9
            cursor.execute("SELECT count(*) FROM registered_models")
            assert cursor.fetchone()[0] == 4

    # carol (EDIT, credentials in the URI, which win over other ones in MLflow's environment variables)
    # runs the whole pipeline again, for one loss (what is checked is where her credentials reach: the
    # driver, and the Ray tasks that load the models to measure them): EDIT records runs and moves @champion
    grant(uri, passwords, "carol", "EDIT")
    passwords["carol's stale environment"] = f"pw-stale-{secrets.token_hex(8)}"  # checked for leaks below too
    carol = ovatune("run", "digits", "--smoke-test", "--losses", "softmax", "--tracking-uri",
                    f"http://carol:{passwords['carol']}@127.0.0.1:{uri.rsplit(':', 1)[1]}",
                    env=as_user("carol", passwords["carol's stale environment"]), home=tmp_path / "carol")  # fmt: skip
    assert carol.returncode == 0, carol.stdout[-3000:] + carol.stderr[-3000:]
    assert f"MLflow store {uri}" in carol.stdout  # printed without the credentials
    with credentials("admin", passwords["admin"]):
        assert len(runs_of("trial")) == 5 and len(runs_of("evaluation")) == 2
        for loss in LOSSES:  # her sweep registered a version of its model (promotion decides @champion)
            assert len(admin.search_model_versions(f"name = 'ovatune-digits-{loss}'")) == (
                2 if loss == "softmax" else 1
            )

    # dave (EDIT, credentials in ~/.mlflow/credentials): the whole pipeline once more, for one loss
    grant(uri, passwords, "dave", "EDIT")
    dave_home = tmp_path / "dave-home"
    (dave_home / ".mlflow").mkdir(parents=True)
    (dave_home / ".mlflow" / "credentials").write_text(
        f"[mlflow]\nmlflow_tracking_username = dave\nmlflow_tracking_password = {passwords['dave']}\n"
    )
    dave = ovatune("run", "digits", "--smoke-test", "--losses", "ova", "--tracking-uri", uri,
                   env={**CLEAN_ENV, "HOME": str(dave_home)}, home=tmp_path / "dave")  # fmt: skip
    assert dave.returncode == 0, dave.stdout[-3000:] + dave.stderr[-3000:]
    with credentials("admin", passwords["admin"]):
        assert len(runs_of("trial")) == 6 and len(runs_of("evaluation")) == 3
        assert len(admin.search_model_versions("name = 'ovatune-digits-ova'")) == 2
        moved = champions()

    # bob (READ) evaluates and exports; his sweep is refused before Ray starts; @champion stays
    grant(uri, passwords, "bob", "READ")
    bob_env = as_user("bob", passwords["bob"])
    refused = ovatune("evaluate", "digits", "--tracking-uri", uri, env=bob_env, home=tmp_path / "bob", timeout=120)
    assert refused.returncode == 2  # before any work: the server, the user, what is needed, who grants it
    line = one_error_line(refused)
    assert "user 'bob' has READ" in line and uri in line and "needs EDIT" in line and "MANAGE" in line
    assert line.endswith("or measure and report without recording: ovatune evaluate digits --no-record")
    assert not (tmp_path / "bob" / "reports").exists()
    evaluated = ovatune("evaluate", "digits", "--no-record", "--tracking-uri", uri, env=bob_env, home=tmp_path / "bob")
    assert evaluated.returncode == 0, evaluated.stdout[-3000:] + evaluated.stderr[-3000:]
    assert "not recorded in MLflow (--no-record)" in evaluated.stdout
    assert (tmp_path / "bob" / "reports" / "digits" / "report.md").exists()
    exported = ovatune("export", "digits", "--tracking-uri", uri, "--out", str(tmp_path / "bob-exports"),
                       env=bob_env, home=tmp_path / "bob")  # fmt: skip
    assert exported.returncode == 0, exported.stdout[-3000:] + exported.stderr[-3000:]
    assert len(list((tmp_path / "bob-exports").rglob("manifest.json"))) == len(LOSSES)
    # nothing on this machine's disk stood in for the bucket, for the runs, the evaluations or the export
    assert not list(tmp_path.rglob("mlruns"))
    for user in ("alice", "carol", "dave", "bob"):
        assert not list((tmp_path / user).rglob("MLmodel")), user
    swept = ovatune("sweep", "digits", "--smoke-test", "--tracking-uri", uri, env=bob_env, home=tmp_path / "bob")
    assert swept.returncode == 2
    line = one_error_line(swept)
    assert "user 'bob' has READ" in line and "needs EDIT" in line
    assert not (tmp_path / "bob" / "ray_results").exists()
    with credentials("admin", passwords["admin"]):
        assert len(runs_of("evaluation")) == 3 and len(runs_of("trial")) == 6
        assert champions() == moved
        some_trial = runs_of("trial")[0].info.run_id
    with credentials("bob", passwords["bob"]):  # and the server itself refuses what READ does not allow
        for refused_call in (lambda: MlflowClient(uri).delete_run(some_trial),
                             lambda: MlflowClient(uri).set_registered_model_alias("ovatune-digits-ova", "champion", "1")):  # fmt: skip
            with pytest.raises(MlflowException) as refused:
                refused_call()
            assert refused.value.error_code == "PERMISSION_DENIED"

    # frank (EDIT on the experiment, READ on the registered models) could record runs but not register
    # or move @champion: his sweep is refused before Ray starts, naming what he lacks
    from mlflow.server import get_app_client

    grant(uri, passwords, "frank", "READ")
    with credentials("admin", passwords["admin"]):
        users = get_app_client("basic-auth", tracking_uri=uri)
        users.revoke_user_permission("frank", "experiment", experiment.experiment_id)
        users.grant_user_permission("frank", "experiment", experiment.experiment_id, "EDIT")
    frank = ovatune("sweep", "digits", "--smoke-test", "--tracking-uri", uri, env=as_user("frank", passwords["frank"]),
                    home=tmp_path / "frank", timeout=120)  # fmt: skip
    assert frank.returncode == 2
    line = one_error_line(frank)
    assert "user 'frank' has READ on registered model 'ovatune-digits-softmax'" in line and "needs EDIT" in line
    assert "experiment 'digits'" not in line and uri in line  # his EDIT there is enough
    assert not (tmp_path / "frank" / "ray_results").exists()

    # eve (no grant, default NO_PERMISSIONS) cannot even read: one line, no traceback
    eve = ovatune("sweep", "digits", "--smoke-test", "--tracking-uri", uri, env=as_user("eve", passwords["eve"]),
                  home=tmp_path / "eve", timeout=120)  # fmt: skip
    assert eve.returncode == 1
    assert "the MLflow server refused user 'eve'" in one_error_line(eve)

    # no password and not the bucket's key anywhere: outputs, files in every home, the server's
    # artifacts in the bucket (model cards, reports, models), params, tags, model version
    # descriptions, Ray's logs
    passwords["the bucket's secret key"] = s3_server["AWS_SECRET_ACCESS_KEY"]
    places = {f"output {i}": text for i, text in enumerate(outputs)}
    for key in bucket_keys(s3_server):
        places[f"s3://ovatune/{key}"] = bucket_bytes(s3_server, key).decode("utf-8", "replace")
    for folder in (tmp_path, ray_tmp):
        for path in folder.rglob("*"):
            if path.is_file() and path.name not in ("auth.ini", "credentials") and path.stat().st_size < 50_000_000:
                places[str(path)] = path.read_bytes().decode("utf-8", "replace")
    with credentials("admin", passwords["admin"]):
        for run in admin.search_runs([experiment.experiment_id], max_results=1000):
            places[f"run {run.info.run_id}"] = " ".join([*run.data.params.values(), *run.data.tags.values()])
        for loss in LOSSES:
            for version in admin.search_model_versions(f"name = 'ovatune-digits-{loss}'"):
                places[f"{loss} v{version.version}"] = f"{version.description} {version.tags}"
    assert len(places) > 50
    for whose, secret in passwords.items():
        leaked = [where for where, text in places.items() if secret in text]
        assert not leaked, f"the secret of {whose} in {leaked[:5]}"
