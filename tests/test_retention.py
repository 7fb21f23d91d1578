"""``tuning.retention``: a running trial keeps its newest two checkpoints, a finished trial only its newest,
on a real sweep stopped and resumed."""

import json
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from ray.train import Checkpoint
from ray.tune import Result
from test_checkpoint_integrity import EPOCHS, _epochs

from tuning.retention import (
    KEEP_CHECKPOINTS,
    delete_older_checkpoints,
    keep_newest_of_finished,
    quiet_gone_checkpoints,
)

from launch import run_ovatune, signal_when, start_ovatune


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


def test_only_tunes_deletion_of_a_checkpoint_already_gone_is_kept_out_of_the_log(tmp_path):
    import logging
    import sys

    import pyarrow.fs
    from ray.train._internal.storage import _delete_fs_path

    quiet_gone_checkpoints()
    quiet_gone_checkpoints()  # idempotent: one filter
    log = logging.getLogger("ray.tune.execution.tune_controller")
    assert len([f for f in log.filters if f.__name__ == "_not_a_gone_checkpoint"]) == 1

    def record(raise_it) -> logging.LogRecord:
        try:
            raise_it()
        except Exception:  # noqa: BLE001 - the record Tune's `logger.exception` makes of it
            return log.makeRecord(log.name, logging.ERROR, __file__, 0, "Trial %s: Error handling checkpoint %s",
                                  ("t", "c"), sys.exc_info())  # fmt: skip

    def missing_file() -> None:
        raise FileNotFoundError(tmp_path / "elsewhere")

    gone = record(lambda: _delete_fs_path(pyarrow.fs.LocalFileSystem(), str(tmp_path / "checkpoint_000000")))
    assert isinstance(gone.exc_info[1], FileNotFoundError)  # what Ray 2.60 raises for a folder already gone
    assert not log.filter(gone)
    assert log.filter(record(missing_file))  # not from Tune's deletion: logged
    assert log.filter(record(lambda: _delete_fs_path(None, "x")))  # another error on the way: logged


@pytest.mark.slow
def test_a_running_trial_keeps_two_checkpoints_a_finished_one_one_and_a_resume_meets_a_listed_one_gone(home):
    """Ctrl-C mid-sweep, then the older checkpoint of each trial (which the job's saved state lists) is
    deleted, as Tune itself deletes one after its last save when the driver is killed (SIGKILL)
    between two saves. The resumed trial's next checkpoint makes Tune delete it again: that used to
    print Tune's 'Error handling checkpoint' with a FileNotFoundError traceback."""
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
    resumed = run_ovatune(*resume[1:], timeout=600, check=True)
    assert "Error handling checkpoint" not in resumed.stdout + resumed.stderr, resumed.stderr[-3000:]
    assert "Traceback" not in resumed.stdout + resumed.stderr, resumed.stderr[-3000:]
    for folder in trials():
        (kept,) = folder.glob("checkpoint_*")  # 40 written, 1 kept
        assert json.loads((kept / "meta.json").read_text())["epoch"] == EPOCHS, kept
        assert sorted(set(_epochs(folder))) == list(range(1, EPOCHS + 1))
