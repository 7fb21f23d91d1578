"""``tuning.retention``: a running trial keeps its newest two checkpoints, a finished trial only its newest,
on a real sweep stopped and resumed."""

import json
import os
import pickle
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient
from ray.train import Checkpoint, CheckpointConfig
from ray.tune import Result
from test_checkpoint_integrity import EPOCHS, _epochs, _trial_runs

from tuning.retention import (
    KEEP_CHECKPOINTS,
    GoneCheckpoints,
    checkpoints_tune_deletes_next,
    delete_older_checkpoints,
    keep_newest_of_finished,
    resume_from_newest_saved,
)

from launch import signal_when, start_ovatune


def test_deleting_older_checkpoints_keeps_the_newest_and_what_is_not_a_checkpoint(tmp_path):
    for index in range(4):
        (tmp_path / f"checkpoint_{index:06d}").mkdir()
        (tmp_path / f"checkpoint_{index:06d}" / "state.pt").write_bytes(b"x" * 10)
    (tmp_path / "result.json").write_text("{}")
    deleted = delete_older_checkpoints(Checkpoint.from_directory(str(tmp_path / "checkpoint_000003")))
    assert sorted(p.rsplit("/", 1)[1] for p in deleted) == [
        "checkpoint_000000",
        "checkpoint_000001",
        "checkpoint_000002",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_000003", "result.json"]


def test_only_finished_trials_lose_their_older_checkpoints(tmp_path):
    results = {}
    # restored: finished before a killed driver's last save, so Tune gives it back without "done"
    for name, metrics, error in (("finished", {"done": True}, None), ("interrupted", {"done": False, "epoch": 4}, None),
                                 ("failed", {"done": True}, RuntimeError()), ("restored", {"epoch": 5}, None)):  # fmt: skip
        for index in range(2):
            (tmp_path / name / f"checkpoint_{index:06d}").mkdir(parents=True)
        newest = Checkpoint.from_directory(str(tmp_path / name / "checkpoint_000001"))
        metrics = {**metrics, "config": {"epochs": 5}}
        results[name] = Result(metrics=metrics, checkpoint=newest, error=error, path=str(tmp_path / name))
    keep_newest_of_finished(results.values())
    kept = {name: sorted(p.name for p in (tmp_path / name).iterdir()) for name in results}
    assert kept == {"finished": ["checkpoint_000001"], "interrupted": ["checkpoint_000000", "checkpoint_000001"],
                    "failed": ["checkpoint_000000", "checkpoint_000001"], "restored": ["checkpoint_000001"]}  # fmt: skip


def test_tune_registers_a_checkpoint_when_one_it_deletes_for_it_is_already_gone(tmp_path):
    """Ray's own checkpoint manager, as a resumed trial's: it lists two checkpoints, the older one
    already deleted. Without :class:`GoneCheckpoints` the next registration raises halfway."""
    from ray.train._internal.checkpoint_manager import _CheckpointManager
    from ray.train._internal.session import _TrainingResult

    def result(index: int) -> _TrainingResult:
        (tmp_path / f"checkpoint_{index:06d}").mkdir()
        return _TrainingResult(Checkpoint.from_directory(str(tmp_path / f"checkpoint_{index:06d}")), {"epoch": index})

    def resumed_trial() -> SimpleNamespace:
        manager = _CheckpointManager(CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS))
        for index in range(2):
            manager.register_checkpoint(result(index))
        (tmp_path / "checkpoint_000000").rmdir()  # Tune deleted it after the job's last save
        return SimpleNamespace(run_metadata=SimpleNamespace(checkpoint_manager=manager))

    trial = resumed_trial()
    assert [c.path for c in checkpoints_tune_deletes_next(trial)] == [str(tmp_path / "checkpoint_000000")]
    with pytest.raises(FileNotFoundError):  # what Tune logged as 'Error handling checkpoint', halfway through
        trial.run_metadata.checkpoint_manager.register_checkpoint(result(2))

    for folder in tmp_path.iterdir():
        folder.rmdir()
    trial = resumed_trial()
    GoneCheckpoints().on_checkpoint(0, [trial], trial, None)
    trial.run_metadata.checkpoint_manager.register_checkpoint(result(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_000001", "checkpoint_000002"]


def _restored_trial(tmp_path: Path, listed: dict[int, dict], saved: dict[int, str]):
    """A Tune trial as a resumed job's state gives it back: its checkpoint manager lists the
    checkpoints ``listed`` (index -> the Tune result reported with it, oldest first), its folder holds
    ``saved`` (index -> the checkpoint's JSON file: a trial's meta.json or a pack's pack.json)."""
    from ray.train._internal.session import _TrainingResult
    from ray.train._internal.storage import StorageContext
    from ray.tune.experiment import Trial

    storage = StorageContext(storage_path=str(tmp_path), experiment_dir_name="job", trial_dir_name="trial")
    trial = Trial("train_classifier", config={"loss": "softmax", "trial_number": 3}, storage=storage, stub=True,
                  checkpoint_config=CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS))  # fmt: skip
    folder = Path(storage.trial_fs_path)
    for index, metrics in listed.items():
        (folder / f"checkpoint_{index:06d}").mkdir(parents=True, exist_ok=True)
        checkpoint = Checkpoint(str(folder / f"checkpoint_{index:06d}"))
        trial.run_metadata.checkpoint_manager.register_checkpoint(_TrainingResult(checkpoint, dict(metrics)))
        trial.storage.current_checkpoint_index = index
    for folder_ in folder.glob("checkpoint_*"):
        shutil.rmtree(folder_)  # then the folders as the killed driver left them
    for index, text in saved.items():
        name, _, content = text.partition(":")
        (folder / f"checkpoint_{index:06d}").mkdir(parents=True)
        (folder / f"checkpoint_{index:06d}" / name).write_text(content)
    return trial, folder


def test_a_resumed_trial_whose_newest_checkpoint_is_gone_goes_on_from_the_newest_saved_after_it(tmp_path):
    """The killed driver's state names checkpoint_000001 (epoch 2) as the trial's newest; Tune had
    deleted it, with the two it wrote after (epochs 3 and 4) beside it. Ray's restore refused it."""
    listed = {1: {"epoch": 2, "training_iteration": 2, "val_accuracy": 0.5}}
    saved = {2: 'meta.json:{"epoch": 3}', 3: 'meta.json:{"epoch": 4}'}
    trial, folder = _restored_trial(tmp_path, listed, saved)

    assert resume_from_newest_saved(trial) is None  # nothing is lost: no warning
    restored = trial.latest_checkpoint_result
    assert restored.checkpoint.path == str(folder / "checkpoint_000003") and Path(restored.checkpoint.path).is_dir()
    assert restored.metrics["epoch"] == 4 and restored.metrics["training_iteration"] == 4  # ASHA's clock
    assert restored.metrics["val_accuracy"] == 0.5  # the rest of the state's result
    assert trial.storage.current_checkpoint_index == 3  # the next is checkpoint_000004
    assert [r.checkpoint.path for r in trial.run_metadata.checkpoint_manager.best_checkpoint_results] == [
        restored.checkpoint.path
    ]
    assert resume_from_newest_saved(trial) is None and trial.latest_checkpoint_result is restored  # done once


def test_a_pack_keeps_its_offset_between_reports_and_epochs_and_an_unreadable_newer_one_is_passed_over(tmp_path):
    # a pack reports once more at each resume: iteration 7 at epoch 6 after one earlier resume
    listed = {4: {"epoch": 6, "training_iteration": 7}}
    saved = {5: 'pack.json:{"epoch": 8, "ended": {}}', 6: "pack.json:{not json"}
    trial, folder = _restored_trial(tmp_path, listed, saved)
    assert resume_from_newest_saved(trial) is None
    assert trial.latest_checkpoint_result.checkpoint.path == str(folder / "checkpoint_000005")
    assert trial.latest_checkpoint_result.metrics["training_iteration"] == 9
    assert trial.storage.current_checkpoint_index == 6  # after the unreadable one: it is never overwritten


def test_a_trial_whose_newest_checkpoint_is_gone_falls_back_to_an_older_one_or_starts_over_with_a_warning(tmp_path):
    listed = {0: {"epoch": 1, "training_iteration": 1}, 3: {"epoch": 4, "training_iteration": 4}}
    trial, folder = _restored_trial(tmp_path / "older", listed, {0: 'meta.json:{"epoch": 1}'})
    lost = resume_from_newest_saved(trial)
    assert lost == "its newest checkpoint checkpoint_000003 is gone; it resumes from checkpoint_000000 (epoch 1)"
    assert trial.latest_checkpoint_result.checkpoint.path == str(folder / "checkpoint_000000")
    assert trial.storage.current_checkpoint_index == 3  # what it wrote before stays out of the way

    trial, _ = _restored_trial(tmp_path / "none", listed, {})
    assert "it trains again from its first epoch" in resume_from_newest_saved(trial)
    assert trial.latest_checkpoint_result is None  # Tune starts it, instead of failing to restore it

    present = {1: {"epoch": 2, "training_iteration": 2}}
    trial, folder = _restored_trial(tmp_path / "present", present, {1: 'meta.json:{"epoch": 2}'})
    assert resume_from_newest_saved(trial) is None
    assert trial.latest_checkpoint_result.checkpoint.path == str(folder / "checkpoint_000001")


def test_gone_checkpoints_checks_the_restored_trials_at_its_first_step_only_and_warns_of_lost_epochs(tmp_path, capsys):
    listed = {3: {"epoch": 4, "training_iteration": 4}}
    trial, _ = _restored_trial(tmp_path, listed, {})
    callback = GoneCheckpoints()
    callback.on_step_begin(0, [trial])
    assert trial.latest_checkpoint_result is None  # starts over, instead of Tune failing to restore it
    assert capsys.readouterr().err == (
        "ovatune: warning: softmax-trial-003: its newest checkpoint checkpoint_000003 is gone and no other "
        "is readable; it trains again from its first epoch\n"
    )
    later, _ = _restored_trial(tmp_path / "later", listed, {})
    callback.on_step_begin(1, [later])  # a trial of this process's own: not a restored one
    assert later.latest_checkpoint_result is not None and capsys.readouterr().err == ""
    assert pickle.loads(pickle.dumps(callback)).__dict__ == {}  # a resume of the job checks again


@pytest.mark.slow
def test_a_running_trial_keeps_two_checkpoints_a_finished_one_one_and_a_resume_meets_a_listed_one_gone(
    home, in_process
):
    """Ctrl-C mid-sweep, then the older checkpoint of each trial (which the job's saved state lists) is
    deleted, as Tune itself deletes one after its last save when the driver is killed (SIGKILL)
    between two saves. The resumed trial's next checkpoint makes Tune delete it again: that used to
    print Tune's 'Error handling checkpoint' with a FileNotFoundError traceback, and left the trial's
    checkpoint index behind (tuning.retention's docstring)."""
    assert KEEP_CHECKPOINTS == 2  # while running: the newest and the one a resume falls back on
    sweep = start_ovatune("sweep", "digits", "--losses", "softmax", "--trials", "2", "--pack", "1", "--epochs",
                          str(EPOCHS), "--set", "checkpoint_every=1", "--name", "kept", home=home,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip

    def trials() -> list[Path]:
        return sorted((home / "ray_results" / "kept").glob("train_classifier_*"))

    def a_few_checkpoints_in() -> bool:  # both trials, neither finished
        return len(trials()) == 2 and all(len(_epochs(folder)) >= 3 for folder in trials())

    output = signal_when(sweep, a_few_checkpoints_in, signal.SIGINT, what="three epochs of both trials")
    assert sweep.returncode == 130, output[-3000:]
    for folder in trials():
        # running: the newest two Tune registered, and at most one more a trial wrote as it stopped
        oldest, *newer = sorted(folder.glob("checkpoint_*"))
        assert 1 <= len(newer) <= KEEP_CHECKPOINTS, [oldest, *newer]
        shutil.rmtree(oldest)

    resume = shlex.split(output.strip().splitlines()[-1].strip())
    resumed = in_process(*resume[1:], check=True)  # Tune's log lines in its stderr too (test_in_process)
    assert "Error handling checkpoint" not in resumed.stdout + resumed.stderr, resumed.stderr[-3000:]
    assert "Traceback" not in resumed.stdout + resumed.stderr, resumed.stderr[-3000:]
    for folder in trials():
        (kept,) = folder.glob("checkpoint_*")  # 40 written, 1 kept
        assert json.loads((kept / "meta.json").read_text())["epoch"] == EPOCHS, kept
        # one folder per epoch, numbered from 0. (Tune's lagging index for the trial would show only at
        # the trial's next start: the traceback check above is what catches a skipped registration.)
        assert kept.name == f"checkpoint_{EPOCHS - 1:06d}", kept
        assert sorted(set(_epochs(folder))) == list(range(1, EPOCHS + 1))
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    runs = _trial_runs(home, "kept")
    assert len(runs) == 2 and all(run.info.status == "FINISHED" for run in runs)
    for run in runs:  # every epoch logged once
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == list(
            range(1, EPOCHS + 1)
        )


def _past_the_saved_newest(job: Path) -> list[Path]:
    """The checkpoints that the job's saved Tune state names as its unfinished trials' newest, where
    the trial has written a newer one since: the ones Tune deletes just before its next save."""
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    try:
        state = json.loads(sorted(job.glob("experiment_state-*.json"))[-1].read_text())
    except (IndexError, json.JSONDecodeError):  # not written yet, or being written
        return []
    named = []
    for trial, metadata in state["trial_data"]:
        latest = _TrainingRunMetadata.from_json_state(metadata).checkpoint_manager.latest_checkpoint_result
        if json.loads(trial)["status"] != "TERMINATED" and latest is not None:
            named.append(Path(latest.checkpoint.path))
    return [
        path for path in named if path.is_dir() and any(c.name > path.name for c in path.parent.glob("checkpoint_*"))
    ]


@pytest.mark.slow
def test_a_driver_killed_between_tunes_deletion_and_its_next_save_resumes_its_trials_from_their_newest_checkpoints(
    home, in_process
):
    """Tune deletes the checkpoint its saved state names as a trial's newest when the trial registers
    its second one since that save, and saves again at the end of that step: a driver killed in
    between (SIGKILL) left a state naming a checkpoint that is gone. The resume printed Ray's 'Could
    not recover from checkpoint as it does not exist on storage anymore' with tracebacks and trained
    the trial again from its first epoch (in a bucket, the trial failed). The window is a few
    milliseconds: the test kills the driver once a trial has written past the state's newest, then
    deletes that one as Tune would have."""
    epochs = 20
    sweep = start_ovatune("sweep", "digits", "--losses", "softmax", "--trials", "2", "--pack", "1", "--epochs",
                          str(epochs), "--set", "checkpoint_every=1", "--name", "window", home=home,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    job = home / "ray_results" / "window"
    try:
        deadline = time.time() + 300
        while not _past_the_saved_newest(job):
            assert time.time() < deadline and sweep.poll() is None, "the sweep ended before the kill"
            time.sleep(0.1)
    finally:
        os.killpg(sweep.pid, signal.SIGKILL)
        sweep.wait()
    deleted = _past_the_saved_newest(job)  # the state the resume reads
    assert deleted
    for checkpoint in deleted:
        shutil.rmtree(checkpoint)

    resumed = in_process("sweep", "digits", "--resume", "--name", "window", check=True)
    output = resumed.stdout + resumed.stderr
    assert "Could not recover" not in output and "Traceback" not in output, output[-3000:]
    assert "ovatune: warning" not in output, output[-3000:]  # a newer checkpoint stood in: nothing lost
    for folder in sorted(job.glob("train_classifier_*")):
        results = [json.loads(line) for line in (folder / "result.json").read_text().splitlines() if line.strip()]
        # never trained again from an earlier epoch (this copy of Tune's results lags the killed driver's)
        reported = [r["epoch"] for r in results]
        assert reported == sorted(set(reported)) and reported[0] == 1 and reported[-1] == epochs, reported
        assert all(r["training_iteration"] == r["epoch"] for r in results)  # ASHA's clock went on where it was
        (kept,) = folder.glob("checkpoint_*")  # one per epoch, numbered on after the resume
        assert kept.name == f"checkpoint_{epochs - 1:06d}"
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    for run in _trial_runs(home, "window"):  # every epoch logged once
        assert run.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == list(
            range(1, epochs + 1)
        )
