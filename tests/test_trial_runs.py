"""The driver's MLflow bookkeeping of trials (``tuning.trial_runs.MlflowTrialCallback``) on a real SQLite store,
fed the way Ray Tune feeds it: real (stub) ``Trial`` objects, results per epoch, and a fresh,
unpickled callback for a resumed sweep (as ``Tuner.restore`` gives it)."""

import errno
import json
import pickle
import time

import pytest
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.experiment import Trial

from trainables.trial_metrics import REPLAY_KEY
from tuning.interruption import Interruption
from tuning.tracking import parent_runs
from tuning.trial_runs import MlflowTrialCallback

tune.register_trainable("tracked", lambda config: None)


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("digits")
    parents = parent_runs(client, experiment, "s1", ["softmax", "ova"], {"seed": 0})
    return uri, client, experiment, parents


def _trial(loss: str, number: int, trial_id: str, epochs: int = 5) -> Trial:
    return Trial("tracked", config={"loss": loss, "trial_number": number, "epochs": epochs, "lr": 0.01},
                 trial_id=trial_id, stub=True)  # fmt: skip


def _report(callback, trial, *epochs, **extra):
    for epoch in epochs:
        result = {"epoch": epoch, "train_loss": 1.0 / epoch, "val_accuracy": 0.5 + epoch / 100, **extra}
        trial.update_last_result(result)  # as the controller does before calling back
        callback.on_trial_result(0, [trial], trial, result)


def _runs(client, experiment, view=ViewType.ACTIVE_ONLY):
    return client.search_runs([experiment], "tags.`ovatune.kind` = 'trial'", run_view_type=view)


def test_a_trial_gets_one_child_run_with_its_params_and_a_metric_per_epoch(store):
    uri, client, experiment, parents = store
    callback = MlflowTrialCallback(uri, experiment, "s1", parents)
    callback.setup()
    trial = _trial("softmax", 0, "t0")
    callback.on_trial_start(0, [trial], trial)
    _report(callback, trial, 1, 2, 3, 4, 5)
    callback.on_trial_complete(0, [trial], trial)
    (run,) = _runs(client, experiment)
    assert run.info.run_name == "softmax-trial-000" and run.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == parents["softmax"] and run.data.tags["ovatune.outcome"] == "completed"
    assert run.data.params["lr"] == "0.01" and run.data.tags["ovatune.ray_trial_id"] == "t0"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2, 3, 4, 5]


def test_a_resumed_callback_continues_the_trials_own_run_without_logging_an_epoch_twice(store):
    uri, client, experiment, parents = store
    first = MlflowTrialCallback(uri, experiment, "s1", parents)
    first.setup()
    trial = _trial("softmax", 0, "t0")
    _report(first, trial, 1, 2, 3)
    first.on_experiment_end([trial])  # the driver stops here (Ctrl-C, a crash)

    resumed = pickle.loads(pickle.dumps(first))  # what Tuner.restore hands the new driver
    resumed.setup()
    # the trial resumes from its epoch-2 checkpoint: epoch 3 is reported again, then 4 and 5
    # (the trial says so with that first result only, an epoch already logged)
    _report(resumed, trial, 3, checkpoint_fallback="…/checkpoint_000002/state.pt does not match")
    _report(resumed, trial, 4, 5)
    resumed.on_trial_complete(0, [trial], trial)
    (run,) = _runs(client, experiment)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2, 3, 4, 5]
    assert run.info.status == "FINISHED" and "does not match" in run.data.tags["ovatune.checkpoint_fallback"]


def test_a_lost_trials_slot_handed_out_again_replaces_its_run(store):
    uri, client, experiment, parents = store
    callback = MlflowTrialCallback(uri, experiment, "s1", parents)
    callback.setup()
    lost = _trial("ova", 1, "lost")
    _report(callback, lost, 1)
    again = MlflowTrialCallback(uri, experiment, "s1", parents)
    again.setup()
    replacement = _trial("ova", 1, "again")  # the searcher handed trial 1 of ova out again
    _report(again, replacement, 1, 2)
    (run,) = _runs(client, experiment)
    assert run.data.tags["ovatune.ray_trial_id"] == "again"
    assert len(_runs(client, experiment, ViewType.DELETED_ONLY)) == 1


@pytest.mark.parametrize(
    ("last", "outcome", "status"),
    [
        ({"epoch": 2, "diverged": 1, "stop_reason": "non-finite training loss (nan) in epoch 2"}, "diverged", "KILLED"),
        ({"epoch": 2, "diverged": 0}, "stopped", "KILLED"),  # the scheduler ended it before its epochs
        ({"epoch": 5, "diverged": 0}, "completed", "FINISHED"),
    ],
)
def test_each_outcome_is_tagged_and_closes_the_run(store, last, outcome, status):
    uri, client, experiment, parents = store
    callback = MlflowTrialCallback(uri, experiment, "s1", parents)
    callback.setup()
    trial = _trial("softmax", 2, "t2")
    _report(callback, trial, 1)
    trial.update_last_result(dict(last))
    callback.on_trial_complete(0, [trial], trial)
    (run,) = _runs(client, experiment)
    assert (run.data.tags["ovatune.outcome"], run.info.status) == (outcome, status)
    if outcome == "diverged":
        assert run.data.tags["ovatune.stop_reason"] == last["stop_reason"]


def test_a_trial_of_a_sweep_from_before_the_loss_rename_is_logged_under_its_loss(store):
    # Sweeps started before the config key `method` became `loss` resume with their old configs.
    uri, client, experiment, parents = store
    callback = MlflowTrialCallback(uri, experiment, "s1", parents)
    callback.setup()
    old = Trial("tracked", config={"method": "ova", "trial_number": 3, "epochs": 5}, trial_id="old", stub=True)
    _report(callback, old, 1)
    (run,) = _runs(client, experiment)
    assert run.info.run_name == "ova-trial-003" and run.data.tags["mlflow.parentRunId"] == parents["ova"]


def test_the_data_a_trial_reports_becomes_its_runs_dataset_inputs_once(store):
    import json

    from trainables.data.provenance import Provenance

    uri, client, experiment, parents = store
    record = Provenance("digits", "train", "digits", "0123456789abcdef", 1293, (1, 8, 8), "float32", "here", 0)
    provenance = json.dumps([record.to_dict()])
    callback = MlflowTrialCallback(uri, experiment, "s1", parents)
    callback.setup()
    trial = _trial("softmax", 0, "t0")
    _report(callback, trial, 1, data_provenance=provenance)  # a trial process's first result says what it trains on
    _report(callback, trial, 2)
    resumed = pickle.loads(pickle.dumps(callback))
    resumed.setup()
    _report(resumed, trial, 3, data_provenance=provenance)  # the resumed process says it again
    resumed.on_trial_complete(0, [trial], trial)
    (run,) = _runs(client, experiment)
    assert [(i.dataset.name, i.dataset.digest) for i in run.inputs.dataset_inputs] == [("digits", "0123456789abcdef")]
    assert "data_provenance" not in run.data.metrics and "data_provenance" not in run.data.params


def test_a_run_whose_driver_died_before_its_params_gets_them_on_resume(store, monkeypatch):
    """The driver killed between creating a trial's run and logging its params (a CI failure:
    the resumed sweep's run had no ``lr``): the resumed driver writes what is missing."""
    uri, client, experiment, parents = store
    first = MlflowTrialCallback(uri, experiment, "s1", parents)
    first.setup()
    trial = _trial("softmax", 0, "t0")

    def killed(*args, **kwargs):  # SIGKILL cannot be aimed between two statements: the call dies instead
        raise KeyboardInterrupt

    monkeypatch.setattr(first.client, "log_batch", killed)
    with pytest.raises(KeyboardInterrupt):
        first.on_trial_start(0, [trial], trial)
    (run,) = _runs(client, experiment)
    assert run.data.params == {}  # the state the kill leaves

    resumed = pickle.loads(pickle.dumps(first))
    resumed.setup()
    _report(resumed, trial, 1, 2)
    resumed.on_trial_complete(0, [trial], trial)
    (run,) = _runs(client, experiment)
    assert run.data.params == {"epochs": "5", "loss": "softmax", "lr": "0.01", "trial_number": "0"}
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2]


def test_a_trials_epochs_reach_the_store_in_order(tmp_path, monkeypatch):
    """A slow write of epoch 1 does not let epoch 2 in first: a driver killed in between would leave a
    gap its resume never fills (a CI failure: a resumed run without epoch 13). The store is slowed
    (a fault that cannot be caused on demand); everything else is real."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    original = SqlAlchemyStore.log_batch

    def slow_first_epoch(self, run_id, metrics, params, tags):
        if any(m.step == 1 for m in metrics):
            time.sleep(1.0)
        return original(self, run_id, metrics, params, tags)

    monkeypatch.setattr(SqlAlchemyStore, "log_batch", slow_first_epoch)
    uri = f"sqlite:///{tmp_path / 'slow.db'}"  # a store made after the patch
    client = MlflowClient(uri)
    experiment = client.create_experiment("digits")
    callback = MlflowTrialCallback(uri, experiment, "s1", parent_runs(client, experiment, "s1", ["softmax"], {}))
    callback.setup()
    trial = _trial("softmax", 0, "t0")
    _report(callback, trial, 1, 2)
    (run,) = _runs(client, experiment)
    deadline = time.time() + 10
    while not (steps := [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]) or 2 not in steps:
        assert time.time() < deadline, steps
        time.sleep(0.01)
    assert steps == [1, 2]  # whenever epoch 2 is there, epoch 1 is too
    callback.on_experiment_end([trial])


def test_a_sweep_saved_before_the_callback_moved_still_unpickles(store):
    """Tune's saved experiment state of an older sweep names ``tuning.tracking.MlflowTrialCallback``;
    ``Tuner.restore`` unpickles it by that name."""
    uri, client, experiment, parents = store
    saved = pickle.dumps(MlflowTrialCallback(uri, experiment, "s1", parents), protocol=0)  # text: names as written
    old = saved.replace(b"ctuning.trial_runs\nMlflowTrialCallback", b"ctuning.tracking\nMlflowTrialCallback")
    assert old != saved
    restored = pickle.loads(old)
    assert isinstance(restored, MlflowTrialCallback) and restored.parents == parents


def test_a_resumed_trial_gets_the_epochs_its_run_lacks_from_its_checkpoint(store):
    """The driver could not log epochs 3 and 4 (a full disk under the store, a killed driver), but the
    trial checkpointed epoch 4: the resumed trial reports that checkpoint's history with its first
    result (``REPLAY_KEY``), and the run's history becomes whole, each epoch once."""
    uri, client, experiment, parents = store
    first = MlflowTrialCallback(uri, experiment, "s1", parents)
    first.setup()
    trial = _trial("softmax", 0, "t0")
    _report(first, trial, 1, 2)
    first.on_experiment_end([trial])

    resumed = pickle.loads(pickle.dumps(first))
    resumed.setup()
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_accuracy": 0.5 + e / 100} for e in range(1, 5)]
    _report(resumed, trial, 5, **{REPLAY_KEY: json.dumps(history)})
    resumed.on_trial_complete(0, [trial], trial)
    (run,) = _runs(client, experiment)
    logged = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val_accuracy")}
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2, 3, 4, 5]
    assert logged[3] == pytest.approx(0.53) and logged[4] == pytest.approx(0.54)
    assert REPLAY_KEY not in run.data.metrics and run.info.status == "FINISHED"


def test_a_full_store_stops_the_job_and_nothing_is_written_after_the_first_failed_write(store, monkeypatch):
    """A metric write that a full disk fails stops the job (as a first Ctrl-C does) instead of the
    driver, and nothing later reaches the store, so the run has no hole: its resume continues from
    its last logged epoch. The full disk is injected here; ``test_full_disk.py`` fills a real one."""
    uri, client, experiment, parents = store
    callback = MlflowTrialCallback(uri, experiment, "s1", parents)
    callback.setup()
    trial = _trial("softmax", 0, "t0")
    _report(callback, trial, 1, 2)
    (run,) = _runs(client, experiment)
    deadline = time.time() + 10
    while len(client.get_metric_history(run.info.run_id, "train_loss")) < 2:  # written (asynchronously)
        assert time.time() < deadline
        time.sleep(0.01)

    def full_disk(*args, **kwargs):
        raise MlflowException("(sqlite3.OperationalError)") from OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch, Interruption() as interruption:
        patch.setattr(callback.client, "log_batch", full_disk)
        _report(callback, trial, 3)
        callback.on_experiment_end([trial])  # the write of epoch 3 has failed by now
    assert interruption.failure is not None and interruption.failure.message == "No space left on device"
    _report(callback, trial, 4)  # space is back, but the job is stopping: the resume logs 3 and 4
    callback.on_trial_complete(0, [trial], trial)
    (run,) = _runs(client, experiment)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2]
    assert run.info.status == "RUNNING"  # closed as interrupted by the command, with its resume command


def test_a_trial_that_finished_while_its_run_could_not_be_closed_is_recorded_when_the_job_resumes(store, tmp_path):
    """The trial finished (Tune saved it as TERMINATED, with its last checkpoint) but the driver
    logged only epochs 1-2 and never closed its run (a full disk under the store): the resumed
    driver, which gets no result of that trial, logs epochs 3-5 from the checkpoint and closes it."""
    from ray.train._internal.session import _TrainingResult

    from trainables.checkpoint import CHECKPOINT_META

    uri, client, experiment, parents = store
    first = MlflowTrialCallback(uri, experiment, "s1", parents)
    first.setup()
    trial, running = _trial("softmax", 0, "t0"), _trial("ova", 0, "t1")
    _report(first, trial, 1, 2)
    _report(first, running, 1)
    first.on_experiment_end([trial, running])
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_accuracy": 0.5 + e / 100} for e in range(1, 6)]
    folder = tmp_path / "checkpoint_000004"
    folder.mkdir()
    (folder / CHECKPOINT_META).write_text(json.dumps({"epoch": 5, "history": history}))
    saved = _TrainingResult(checkpoint=tune.Checkpoint.from_directory(str(folder)), metrics=history[-1])
    trial.run_metadata.checkpoint_manager.register_checkpoint(saved)  # as Trial.on_checkpoint does
    trial.update_last_result(history[-1])
    trial.set_status(Trial.TERMINATED)

    resumed = pickle.loads(pickle.dumps(first))
    resumed.setup()
    resumed.on_step_begin(0, [trial, running])
    resumed.on_step_begin(1, [trial, running])  # once per driver
    resumed.on_experiment_end([trial, running])
    finished, unfinished = (client.get_run(first._runs[key].info.run_id) for key in (("softmax", 0), ("ova", 0)))
    assert [m.step for m in client.get_metric_history(finished.info.run_id, "train_loss")] == [1, 2, 3, 4, 5]
    assert finished.info.status == "FINISHED" and finished.data.tags["ovatune.outcome"] == "completed"
    assert unfinished.info.status == "RUNNING" and "ovatune.outcome" not in unfinished.data.tags  # still to train


@pytest.mark.parametrize(
    ("record", "stops"),
    [
        ("Failure # 1 (occurred at 2026-12-06_02-50-09)\nValueError: lr must be positive\n", False),
        ("Failure # 1 (occurred at …)\nOSError: [Errno 28] Error writing bytes to file. Detail: [errno 28] No space "
         "left on device\n", True),
        # the record keeps every failure: only the last one says why the trial ended
        ("Failure # 1 (occurred at …)\nOSError: [Errno 28] No space left on device\n"
         "Failure # 2 (occurred at …)\nValueError: lr must be positive\n", False),
    ],
)  # fmt: skip
def test_a_trial_error_stops_the_job_only_when_it_is_a_full_disk(store, monkeypatch, record, stops):
    """Ray Tune keeps a trial's failures as text (``Trial.get_error`` returns the error file's
    contents); a trial that failed for its storage stops the job and keeps its run open for the
    resume, any other error closes its run as an error."""
    uri, client, experiment, parents = store
    callback = MlflowTrialCallback(uri, experiment, "s1", parents)
    callback.setup()
    trial = _trial("softmax", 0, "t0")
    _report(callback, trial, 1)
    monkeypatch.setattr(trial, "get_error", lambda: record)
    monkeypatch.setattr(Trial, "local_path", property(lambda self: "/ray_results/s1/t0"))  # a stub has no storage
    with Interruption() as interruption:
        callback.on_trial_error(0, [trial], trial)
        callback.on_experiment_end([trial])
    (run,) = _runs(client, experiment)
    assert (interruption.failure is not None) == stops
    assert run.info.status == ("RUNNING" if stops else "FAILED")


def test_a_run_whose_last_write_fails_as_it_finishes_is_not_closed_as_completed(store, monkeypatch):
    """The trial finishes while its last epoch's write is failing on a full disk: the run must not
    be closed FINISHED without that epoch (no resume would then log it)."""
    uri, client, experiment, parents = store
    callback = MlflowTrialCallback(uri, experiment, "s1", parents)
    callback.setup()
    trial = _trial("softmax", 0, "t0", epochs=2)
    _report(callback, trial, 1)
    (run,) = _runs(client, experiment)
    deadline = time.time() + 10
    while not client.get_metric_history(run.info.run_id, "train_loss"):
        assert time.time() < deadline
        time.sleep(0.01)

    def slow_full_disk(*args, **kwargs):  # still failing when the trial's completion is handled
        time.sleep(0.5)
        raise MlflowException("(sqlite3.OperationalError)") from OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch, Interruption() as interruption:
        patch.setattr(callback.client, "log_batch", slow_full_disk)
        _report(callback, trial, 2)
        callback.on_trial_complete(0, [trial], trial)
    assert interruption.failure is not None
    (run,) = _runs(client, experiment)
    assert run.info.status == "RUNNING" and "ovatune.outcome" not in run.data.tags
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1]


def test_finished_unrecorded_trials_are_recorded_even_when_the_resumed_job_runs_no_step(store, tmp_path):
    """Every trial had ended: Tune's restored job is finished at once and calls no ``on_step_begin``."""
    uri, client, experiment, parents = store
    first = MlflowTrialCallback(uri, experiment, "s1", parents)
    first.setup()
    trial = _trial("softmax", 0, "t0", epochs=2)
    _report(first, trial, 1)
    first.on_experiment_end([trial])
    trial.update_last_result({"epoch": 2, "train_loss": 0.5, "val_accuracy": 0.52})
    trial.set_status(Trial.TERMINATED)  # no checkpoint: its last result is what it has

    resumed = pickle.loads(pickle.dumps(first))
    resumed.setup()
    resumed.on_experiment_end([trial])
    run = client.get_run(first._runs[("softmax", 0)].info.run_id)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2]
    assert run.info.status == "FINISHED" and run.data.tags["ovatune.outcome"] == "completed"


def test_an_unreadable_checkpoint_replays_nothing(tmp_path):
    from tuning.trial_runs import checkpoint_history

    assert checkpoint_history(tune.Checkpoint.from_directory(str(tmp_path / "gone"))) == []
    (tmp_path / "meta.json").write_text("{trunc")
    assert checkpoint_history(tune.Checkpoint.from_directory(str(tmp_path))) == []
