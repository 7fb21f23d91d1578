"""``tuning.retention``: a running trial keeps its newest two checkpoints, a finished trial only its newest,
on a real sweep stopped and resumed."""

import json
import shlex
import shutil
import signal
import subprocess
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
