"""``tuning.tracking``: the experiment, the parent runs of a job, a stopped job's runs closed and
reopened, and MLflow's registration notices dropped, on a real SQLite store."""

import sys

import pytest
from mlflow.tracking import MlflowClient

from tuning.settings import resolve_settings
from tuning.tracking import (
    TAG_KIND,
    TAG_OUTCOME,
    TAG_STOP_REASON,
    close_parent,
    find_runs,
    get_or_create_experiment,
    mark_interrupted,
    parent_runs,
    without_registration_notices,
)


@pytest.fixture
def store(tmp_path):
    """(client, experiment id) of a fresh store whose artifacts live in the home."""
    settings = resolve_settings(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = MlflowClient(settings.tracking_uri)
    return client, get_or_create_experiment(client, "digits", "8×8 digits", settings)


def test_an_experiment_is_created_once_with_its_description_and_its_artifacts_in_the_home(store, tmp_path):
    client, experiment_id = store
    settings = resolve_settings(tmp_path, client.tracking_uri)
    assert get_or_create_experiment(client, "digits", "another text", settings) == experiment_id
    experiment = client.get_experiment(experiment_id)
    assert experiment.tags["mlflow.note.content"] == "8×8 digits"  # the first description stays
    assert experiment.artifact_location == (tmp_path / "mlartifacts" / "digits").as_uri()


def test_a_jobs_parents_are_found_again_and_reopened_not_created_twice(store):
    client, experiment_id = store
    first = parent_runs(client, experiment_id, "s1", ["softmax", "dm"], {"trials": 4})
    assert set(first) == {"softmax", "dm"} and len(set(first.values())) == 2
    run = client.get_run(first["dm"])
    assert run.info.run_name == "dm · s1" and run.data.params == {"trials": "4"} and run.data.tags[TAG_KIND] == "parent"
    client.set_terminated(first["dm"], status="KILLED")
    again = parent_runs(client, experiment_id, "s1", ["softmax", "dm"], {"trials": 4})
    assert again == first and client.get_run(first["dm"]).info.status == "RUNNING"
    replicates = parent_runs(client, experiment_id, "s1", ["dm"], {}, kind="replicates", titles={"dm": "dm × 3"})
    assert replicates["dm"] != first["dm"]  # another kind of job of the same name is its own run
    assert client.get_run(replicates["dm"]).info.run_name == "dm × 3"
    assert {r.info.run_id for r in find_runs(client, experiment_id, kind="parent")} == set(first.values())


def test_a_stopped_job_is_closed_as_interrupted_and_its_resume_clears_that(store):
    client, experiment_id = store
    (parent,) = parent_runs(client, experiment_id, "s1", ["ova"], {}).values()
    tags = {TAG_KIND: "trial", "ovatune.sweep": "s1", "mlflow.parentRunId": parent}
    running = client.create_run(experiment_id, tags=tags).info.run_id
    finished = client.create_run(experiment_id, tags=tags).info.run_id
    client.set_terminated(finished, status="FINISHED")
    other_sweep = parent_runs(client, experiment_id, "s2", ["ova"], {})["ova"]

    assert mark_interrupted(client, experiment_id, "s1", "SIGTERM") == 1  # one trial run was unfinished
    for run_id in (parent, running):
        run = client.get_run(run_id)
        assert run.info.status == "KILLED"
        assert run.data.tags[TAG_OUTCOME] == "interrupted" and run.data.tags[TAG_STOP_REASON] == "SIGTERM"
    assert client.get_run(finished).info.status == "FINISHED" and TAG_OUTCOME not in client.get_run(finished).data.tags
    assert client.get_run(other_sweep).info.status == "RUNNING"  # another sweep's runs are left alone

    close_parent(client, parent, "FINISHED")  # the resumed sweep finished
    run = client.get_run(parent)
    assert run.info.status == "FINISHED" and TAG_OUTCOME not in run.data.tags and TAG_STOP_REASON not in run.data.tags


def test_only_mlflows_registration_notices_are_dropped(capsys):
    with without_registration_notices():
        print("Successfully registered model 'ovatune-digits-dm'.", file=sys.stderr)
        print("Created version '3' of model 'ovatune-digits-dm'.", file=sys.stderr)
        print("a warning the user should see", file=sys.stderr)
    assert capsys.readouterr().err == "a warning the user should see\n"
