"""``tuning.retention``: a finished trial keeps only its newest checkpoint, on a real sweep."""

import json

from ray.train import Checkpoint
from ray.tune import Result

from tuning.retention import KEEP_CHECKPOINTS, delete_older_checkpoints, keep_newest_of_finished

from launch import run_ovatune


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


def test_a_finished_sweeps_trials_keep_only_their_newest_checkpoint(home):
    assert KEEP_CHECKPOINTS == 3  # while running: the newest and older ones a resume falls back on
    run_ovatune("sweep", "digits", "--losses", "softmax", "--trials", "3", "--pack", "1", "--epochs", "6",
                "--set", "checkpoint_every=1", "--name", "kept", home=home, timeout=600, check=True)  # fmt: skip
    folders = sorted((home / "ray_results" / "kept").glob("train_classifier_*"))
    assert len(folders) == 3
    for folder in folders:
        (kept,) = folder.glob("checkpoint_*")  # 6 written, 1 kept
        assert json.loads((kept / "meta.json").read_text())["epoch"] == 6, kept
