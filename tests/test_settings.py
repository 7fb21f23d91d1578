"""``tuning.settings``: where an invocation keeps its state, and a tracking URI as it may be printed."""

import os
from pathlib import Path

from tuning.settings import DEFAULT_HOME, has_secret, redact, resolve_settings


def test_redact_masks_passwords_and_tokens():
    assert redact("http://alice:uri-secret-5f1c@127.0.0.1:5000") == "http://alice:***@127.0.0.1:5000"
    assert redact("postgresql://u:pw@/db?host=/run/pg&password=x") == "postgresql://u:***@/db?host=/run/pg&password=***"
    assert redact("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"


def test_the_home_and_store_come_from_the_options_then_the_environment_then_the_defaults(tmp_path, monkeypatch):
    monkeypatch.delenv("OVATUNE_HOME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    default = resolve_settings()
    assert default.home == tmp_path / DEFAULT_HOME and default.tracking_uri == f"sqlite:///{default.home}/mlflow.db"
    assert default.is_local_store and default.ray_results == default.home / "ray_results"
    monkeypatch.setenv("OVATUNE_HOME", str(tmp_path / "env-home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    from_environment = resolve_settings()
    assert from_environment.home == tmp_path / "env-home" and from_environment.tracking_uri == "http://127.0.0.1:5000"
    assert not from_environment.is_local_store
    given = resolve_settings(tmp_path / "given", "sqlite:////tmp/x.db")
    assert given.home == tmp_path / "given" and given.tracking_uri == "sqlite:////tmp/x.db"


def test_credentials_in_an_http_uri_go_to_mlflows_variables_and_leave_the_uri(tmp_path, monkeypatch):
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(name, "stale")  # restored after the test; the URI's credentials win
    settings = resolve_settings(tmp_path, "http://carol:s3cret-7@127.0.0.1:5000")
    assert settings.tracking_uri == "http://127.0.0.1:5000" and "s3cret" not in settings.display_uri
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "carol" and os.environ["MLFLOW_TRACKING_PASSWORD"] == "s3cret-7"


def test_a_printed_command_says_how_to_give_the_uris_password_again(tmp_path, monkeypatch):
    """The resume (or evaluate-again, export-the-rest) command ovatune prints has no password; when the
    user gave one in --tracking-uri, the command ends with a shell comment saying how to give it
    again, instead of dropping it silently (the command as printed would be refused)."""
    import shlex

    from search_spaces import get_space
    from tuning.commands import _again
    from tuning.engine import SWEEP, resume_command

    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    given = resolve_settings(tmp_path, "http://carol:s3cret-7@127.0.0.1:5000")
    for printed in (shlex.join(resume_command(SWEEP, get_space("digits"), "s1", given, None)) + given.credentials_note,
                    _again(given, "evaluate", "digits")):  # fmt: skip
        assert "s3cret" not in printed and "--tracking-uri http://127.0.0.1:5000" in printed
        command, note = printed.split("  # ")
        assert "as carol" in note and "MLFLOW_TRACKING_PASSWORD" in note and "~/.mlflow/credentials" in note
        assert shlex.split(printed, comments=True) == shlex.split(command)  # a shell runs the command alone
    # credentials from the environment or a credentials file are where they were: nothing to add
    for plain in (resolve_settings(tmp_path, "http://127.0.0.1:5000"), resolve_settings(tmp_path)):
        assert plain.credentials_note == "" and "#" not in _again(plain, "evaluate", "digits")


def test_tune_storage_is_the_homes_ray_results_a_shared_folder_or_a_bucket(tmp_path, monkeypatch):
    from search_spaces import get_space
    from tuning.engine import SWEEP, resume_command
    from tuning.settings import STORAGE_ENV

    monkeypatch.delenv(STORAGE_ENV, raising=False)
    default = resolve_settings(tmp_path / "home")
    assert default.tune_storage == str(tmp_path / "home" / "ray_results") and not default.storage_is_bucket
    assert default.ray_results == tmp_path / "home" / "ray_results"
    assert "--storage" not in resume_command(SWEEP, get_space("digits"), "s1", default, None)
    shared = resolve_settings(tmp_path / "home", storage=str(tmp_path / "efs" / "ray"))
    assert shared.ray_results == tmp_path / "efs" / "ray"  # the lock beside the jobs, for drivers on every node
    assert shared.job_storage("s1") == str(tmp_path / "efs" / "ray" / "s1")
    monkeypatch.setenv(STORAGE_ENV, "s3://team/ray?endpoint_override=minio:9000&scheme=http")
    bucket = resolve_settings(tmp_path / "home")
    assert bucket.storage_is_bucket and bucket.ray_results == tmp_path / "home" / "ray_results"  # local: the lock
    assert bucket.job_storage("s1") == "s3://team/ray/s1?endpoint_override=minio:9000&scheme=http"  # query kept last
    command = resume_command(SWEEP, get_space("digits"), "s1", bucket, None)
    assert command[command.index("--storage") + 1] == bucket.tune_storage  # the resume finds the same bucket
    assert resolve_settings(tmp_path / "home", storage="file:///shared/ray").ray_results == Path("/shared/ray")
    # a key in the URI is refused by the commands (tuning.storage.KEYS_IN_STORAGE): Tune would store it
    assert has_secret("s3://AKIA:s3cret/key@team/ray") and has_secret("s3://team/ray?secret_key=x")
    assert not has_secret(bucket.tune_storage)


def test_the_newest_job_in_a_folder_storage_is_the_last_one_written(tmp_path, monkeypatch):
    from tuning.settings import STORAGE_ENV
    from tuning.storage import job_names

    monkeypatch.delenv(STORAGE_ENV, raising=False)
    settings = resolve_settings(tmp_path)
    for age, name in ((300, "digits-old"), (100, "digits-new"), (200, "digits-mid"), (50, "cifar10-x")):
        folder = settings.ray_results / name
        folder.mkdir(parents=True)
        os.utime(folder, (1_000_000 - age, 1_000_000 - age))
    (settings.ray_results / "digits-notes.txt").write_text("")  # a file is not a job
    assert job_names(settings, "digits-") == ["digits-old", "digits-mid", "digits-new"]
