"""tuning.storage: Ray Tune's copies of a job's saved state into a storage folder, with the driver
SIGKILLed in the middle of one (a real process, killed for real, while Tune's own syncer copies)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tuning.storage import PARTIAL

from launch import environment

# Tune's background syncer copying a job's staging folder into its storage folder, as the driver does
# after each save (ray.train._internal.storage._FilesystemSyncer); with argv[3] == "whole", as ovatune's
# driver does it (tuning.storage.whole_state_uploads)
SYNC = """
import sys
from pyarrow.fs import LocalFileSystem
from ray.train._internal.storage import _FilesystemSyncer
if sys.argv[3] == "whole":
    from tuning.storage import whole_state_uploads
    whole_state_uploads()
syncer = _FilesystemSyncer(storage_filesystem=LocalFileSystem(), sync_period=0, sync_timeout=600)
syncer.sync_up(sys.argv[1], sys.argv[2])
syncer.wait()
"""
STATE = "experiment_state-2026-12-07_22-00-00.json"


def _sync(staging: Path, job: Path, how: str, kill_mid_copy: bool) -> None:
    """Run the copy in a process of its own; with ``kill_mid_copy``, SIGKILL it once a file in ``job``
    (the state file itself, or a hidden copy beside it) holds part of the new state."""
    size = (staging / STATE).stat().st_size
    process = subprocess.Popen([sys.executable, "-c", SYNC, str(staging), str(job), how], env=environment())
    try:
        deadline = time.time() + 120
        while kill_mid_copy:
            assert process.poll() is None and time.time() < deadline, "the copy ended before it could be killed"
            if any(0 < entry.stat().st_size < size and entry.stat().st_size != len(b'{"old": true}')
                   for entry in os.scandir(job)):  # fmt: skip
                process.send_signal(signal.SIGKILL)
                break
    finally:
        assert process.wait(timeout=120) == (-signal.SIGKILL if kill_mid_copy else 0)


@pytest.fixture
def job_state(tmp_path) -> tuple[Path, Path, dict]:
    """(the driver's staging folder with a new 256 MB state, the job's storage folder with its old one,
    the new state)."""
    staging, job = tmp_path / "driver_artifacts", tmp_path / "ray_results" / "sweep"
    staging.mkdir()
    job.mkdir(parents=True)
    (job / STATE).write_text('{"old": true}')
    new = {"trial_data": [], "padding": "x" * 256_000_000}  # long enough to be caught mid-copy
    (staging / STATE).write_text(json.dumps(new))
    return staging, job, new


@pytest.mark.slow  # three processes that import Ray, and 256 MB written three times: about 10 s
def test_a_driver_killed_while_tune_copies_its_state_leaves_each_file_whole(job_state):
    staging, job, new = job_state

    # Ray's own copy, killed mid-way: the file Tune resumes from is cut short (the fault is real)
    _sync(staging, job, "ray", kill_mid_copy=True)
    with pytest.raises(json.JSONDecodeError):
        json.loads((job / STATE).read_text())

    # ovatune's: the old state stays whole until the new one is whole beside it
    (job / STATE).write_text('{"old": true}')
    _sync(staging, job, "whole", kill_mid_copy=True)
    assert json.loads((job / STATE).read_text()) == {"old": True}
    (leftover,) = [p.name for p in job.iterdir() if p.name != STATE]
    assert PARTIAL.fullmatch(leftover) and leftover.startswith(f".{STATE}.")  # hidden, not a name Tune reads

    # the next copy completes: the new state in place, the killed copy's leftover gone, and an earlier
    # driver's too (each driver names its state by its own start: that name never comes back)
    (job / ".experiment_state-2026-12-06_10-00-00.json.0123abcd.partial").write_text("{")
    _sync(staging, job, "whole", kill_mid_copy=False)
    assert [p.name for p in job.iterdir()] == [STATE]
    assert json.loads((job / STATE).read_text()) == new
