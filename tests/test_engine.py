"""``tuning.engine``: what a sweep and a replicate set share. Their runs end to end are in
test_end_to_end, test_interruption and test_replicates; here, the parts each kind once had its own
copy of, on a real MLflow store."""

import pytest
import ray
from mlflow.tracking import MlflowClient

from search_spaces import get_space
from tuning.engine import (
    REPLICATES,
    SWEEP,
    Job,
    JobOutcome,
    TrialShape,
    close_interrupted,
    name_job,
    resume_job,
    stored_job,
)
from tuning.settings import resolve_settings
from tuning.tracking import TAG_KIND, TAG_LOSS, TAG_SWEEP, get_or_create_experiment, parent_runs


@pytest.fixture
def store(tmp_path):
    # the store named, not read from MLFLOW_TRACKING_URI: an earlier in-process command of this
    # worker (a module's fixture) may have left its own there (mlflow.set_tracking_uri sets it)
    settings = resolve_settings(str(tmp_path / "home"), f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}")
    client = MlflowClient(settings.tracking_uri)
    space = get_space("digits")
    return settings, client, space, get_or_create_experiment(client, space.name, space.description, settings)


@pytest.mark.parametrize("kind", [SWEEP, REPLICATES], ids=lambda kind: kind.command)
def test_an_interrupted_job_is_closed_with_the_command_that_resumes_its_kind(store, kind):
    settings, client, space, experiment_id = store
    parents = parent_runs(client, experiment_id, "job-1", ["softmax"], {}, kind=kind.parent_kind)
    trial = client.create_run(experiment_id, tags={TAG_KIND: kind.trial_kind, TAG_SWEEP: "job-1", TAG_LOSS: "softmax"})
    done = client.create_run(experiment_id, tags={TAG_KIND: kind.trial_kind, TAG_SWEEP: "job-1", TAG_LOSS: "softmax"})
    client.set_terminated(done.info.run_id, "FINISHED")
    job = Job(kind, "job-1", experiment_id, parents, "val_accuracy", "max")
    outcome = JobOutcome(job, None, interrupted=2)

    closed, command = close_interrupted(outcome, space, settings, address=None)

    assert closed == 1  # the unfinished trial run; the finished one is left as it was
    assert command.startswith(f"ovatune {kind.command} digits --resume --name job-1 --home ")
    for run_id in (trial.info.run_id, parents["softmax"]):
        run = client.get_run(run_id)
        assert run.info.status == "KILLED" and run.data.tags["ovatune.outcome"] == "interrupted"
        # a replicate set's runs said "resume with ovatune sweep --resume"
        assert run.data.tags["ovatune.stop_reason"] == f"interrupted by SIGINT; resume with: {command}"
    assert client.get_run(done.info.run_id).info.status == "FINISHED"


def test_a_new_job_name_is_refused_when_taken_and_a_resume_needs_its_runs(store):
    settings, client, space, experiment_id = store
    parent_runs(client, experiment_id, "reps", ["ova"], {"seeds": 2}, kind=REPLICATES.parent_kind)
    with pytest.raises(ValueError, match="a replicate set named 'reps' already exists"):
        name_job(REPLICATES, space, settings, client, experiment_id, "reps", resume=False)
    assert name_job(SWEEP, space, settings, client, experiment_id, "reps", resume=False) == "reps"  # kinds apart
    assert name_job(REPLICATES, space, settings, client, experiment_id, None, resume=False).startswith(
        "replicates-digits-"
    )
    with pytest.raises(FileNotFoundError, match="no replicate set of 'digits' to resume"):
        name_job(REPLICATES, space, settings, client, experiment_id, None, resume=True)
    assert stored_job(REPLICATES, client, experiment_id, "reps", settings) == (["ova"], {"seeds": "2"})
    with pytest.raises(FileNotFoundError, match="sweep 'reps' has no runs in the MLflow store"):
        stored_job(SWEEP, client, experiment_id, "reps", settings)


@pytest.mark.parametrize("kind", [SWEEP, REPLICATES], ids=lambda kind: kind.command)
def test_a_resume_is_checked_against_how_its_job_was_started_before_ray_starts(store, kind):
    settings, client, space, experiment_id = store
    parents = parent_runs(client, experiment_id, "job-1", ["softmax", "ova"], {"seed": 3, "promote": "never"},
                          kind=kind.parent_kind)  # fmt: skip
    for run_id in parents.values():
        client.set_terminated(run_id, "KILLED")  # as an interrupted job leaves them
    seen = []

    def check(stored: dict[str, str]) -> None:
        seen.append(stored)
        raise ValueError("--seed 4 (the sweep has 3)")

    with pytest.raises(ValueError, match="the sweep has 3"):
        resume_job(kind, "job-1", space, settings, client, experiment_id, None, TrialShape(), "val_accuracy", check)
    assert seen == [{"seed": "3", "promote": "never"}]
    assert not ray.is_initialized()  # refused before anything started
    assert {client.get_run(run_id).info.status for run_id in parents.values()} == {"KILLED"}  # not reopened
