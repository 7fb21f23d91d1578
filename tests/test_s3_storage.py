"""Ray Tune's storage in a bucket (``--storage s3://…``), for clusters without a shared file system:
a real S3-compatible server on 127.0.0.1 (moto's, conftest's ``s3_server`` fixture).

A sweep killed mid-way resumes from the checkpoints in the bucket (found by ``--resume`` alone, as in a
folder), promotion registers from them, and a multi-worker trial (Ray Train's own run inside the
trial) reports its checkpoints through the bucket too. Nothing of a checkpoint is kept on this
machine's disk in place of the bucket, and the bucket's key is in no output.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from mlflow.tracking import MlflowClient

from buckets import bucket_bytes, bucket_keys
from launch import run_ovatune, start_ovatune, wait_for

pytestmark = pytest.mark.slow

STORAGE = "s3://ovatune/ray"


def _user_env(aws: dict[str, str]) -> dict[str, str]:
    """The user's shell: the bucket's endpoint and key in AWS's own variables, no MLflow server."""
    plain = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    return {**plain, **{k: v for k, v in aws.items() if k.startswith("AWS_")}}


def test_a_sweep_in_a_bucket_resumes_from_its_checkpoints_there_and_promotes_them(s3_server, tmp_path):
    aws, home = s3_server, tmp_path / "home"
    env = _user_env(aws)
    args = ["sweep", "digits", "--losses", "softmax", "--trials", "2", "--epochs", "60", "--pack", "1",
            "--storage", STORAGE]  # fmt: skip
    home.mkdir()
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    client.search_experiments()  # the store's schema first: two processes migrating one new file collide
    log = open(tmp_path / "sweep.log", "w")  # what the killed sweep said, for a failure's message
    sweep = start_ovatune(*args, "--name", "digits-in-a-bucket", home=home, env=env, stdout=log,
                          stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

    def mid_way() -> bool:
        assert sweep.poll() is None, (tmp_path / "sweep.log").read_text()[-3000:]
        # Tune uploads its state (which checkpoints each trial has) to a bucket at most every 5 minutes
        # (SyncConfig.sync_period), or sooner once a trial has registered num_to_keep checkpoints
        # since the last upload: kill the driver once the state in the bucket names a checkpoint, and
        # no trial has finished yet.
        states = [k for k in bucket_keys(aws) if k.startswith("ray/digits-in-a-bucket/experiment_state")]
        if not any(b"checkpoint_0000" in bucket_bytes(aws, key) for key in states):
            return False
        experiment = client.get_experiment_by_name("digits")
        trials = client.search_runs([experiment.experiment_id], "tags.`ovatune.kind` = 'trial'")
        assert not any(t.info.status == "FINISHED" for t in trials), "a trial finished before the kill"
        return True

    try:
        wait_for(mid_way, 300, "Tune's state in the bucket naming a checkpoint")
    finally:
        os.killpg(sweep.pid, signal.SIGKILL)  # the driver and its local Ray, no clean-up
        sweep.wait()

    resumed = run_ovatune(*args, "--resume", home=home, env=env, timeout=600)  # the newest sweep, found in the bucket
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "ovatune-digits-softmax@champion" in resumed.stdout

    # ovatune's record first: each trial's run closed as completed, every epoch logged once
    experiment = client.get_experiment_by_name("digits")
    trials = client.search_runs([experiment.experiment_id], "tags.`ovatune.kind` = 'trial'")
    said = resumed.stdout[-1500:] + resumed.stderr[-3000:]  # for a failure's message
    ended = [(t.info.status, t.data.tags.get("ovatune.outcome"), t.data.tags.get("ovatune.stop_reason")) for t in trials]  # fmt: skip
    assert len(trials) == 2 and all(t.info.status == "FINISHED" for t in trials), (ended, said)
    for trial in trials:
        steps = [m.step for m in client.get_metric_history(trial.info.run_id, "train_loss")]
        assert steps == list(range(1, 61)), trial.info.run_name  # nothing logged twice

    # then Tune's, in the bucket
    keys = bucket_keys(aws)
    job = [k for k in keys if k.startswith("ray/digits-in-a-bucket/")]
    assert "ray/digits-in-a-bucket/tuner.pkl" in job and any("experiment_state" in k for k in job), job
    results = [k for k in job if k.endswith("/result.json")]
    assert len(results) == 2, job
    restored = []
    for key in results:  # each trial ran on to its last epoch
        rows = [json.loads(line) for line in bucket_bytes(aws, key).decode().splitlines() if line.strip()]
        epochs = [(row["epoch"], row["iterations_since_restore"]) for row in rows]  # for a failure's message
        assert rows[-1]["epoch"] == 60, (key, epochs, said)
        # Ray counts iterations since the last restore: a 1 on a row past epoch 1 is a resume. (A
        # restored trial's result.json in a bucket may hold only the rows since its restore.)
        restored += [row["epoch"] for row in rows if row["iterations_since_restore"] == 1 and row["epoch"] > 1]
    assert restored and all((epoch - 1) % 5 == 0 for epoch in restored), restored  # right after a checkpoint
    assert any("/checkpoint_" in k and k.endswith("state.pt") for k in job), job
    champion = client.get_model_version_by_alias("ovatune-digits-softmax", "champion")
    assert champion.tags["sweep"] == "digits-in-a-bucket"
    # the checkpoints live in the bucket only; the home keeps the job's lock and reserve, nothing of Tune's
    assert not [p for p in home.rglob("checkpoint_*")], list(home.rglob("checkpoint_*"))
    assert not (home / "ray_results" / "digits-in-a-bucket").exists()
    # the bucket's key stays in the environment: not in the output, nor in Tune's state in the bucket
    assert aws["AWS_SECRET_ACCESS_KEY"] not in resumed.stdout + resumed.stderr
    for key in [k for k in job if k.endswith(("tuner.pkl", ".json", ".pkl"))]:
        assert aws["AWS_SECRET_ACCESS_KEY"].encode() not in bucket_bytes(aws, key), key


def test_a_multi_worker_trial_reports_its_checkpoints_through_the_bucket(s3_server, tmp_path):
    # Ray Train's run inside the trial persists each checkpoint in the bucket; the trial hands that
    # checkpoint (with its file system) to Tune, which copies it into the trial's folder there.
    aws, home = s3_server, tmp_path / "home"
    ran = run_ovatune("sweep", "digits", "--losses", "softmax", "--trials", "1", "--epochs", "6", "--workers-per-trial",
                      "2", "--cpus-per-trial", "1", "--storage", STORAGE, "--name", "two-workers", "--verbose",
                      home=home, env=_user_env(aws), timeout=600)  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert "ovatune-digits-softmax@champion" in ran.stdout
    # --verbose: the libraries' notices, the trials' own too (trainables.VERBOSE_ENV), here Ray Train's
    # INFO line per report that a plain run drops (test_distributed's two-worker run checks that)
    assert "Reporting training result 6" in ran.stdout + ran.stderr, ran.stderr[-3000:]
    job = [k for k in bucket_keys(aws) if k.startswith("ray/two-workers/")]
    tune_checkpoints = {
        k.split("/checkpoint_")[1].split("/")[0] for k in job if "/checkpoint_" in k and "ray-train-" not in k
    }
    assert tune_checkpoints, job  # Tune's own copies, beside the trial's result.json
    assert not [k for k in job if "ray-train-" in k], job  # Train's run is deleted once Tune has its copies
    assert not [p for p in home.rglob("checkpoint_*")]


def test_resume_passes_over_a_corrupted_checkpoint_in_a_bucket_to_the_one_before(s3_server, tmp_path, monkeypatch):
    # trainables.checkpoint.earlier_checkpoints lists the trial's older checkpoints through the
    # checkpoint's own file system: in a bucket as in a folder (before, only a folder was listed)
    from pyarrow import fs
    from ray.train import Checkpoint
    from test_checkpoint import _checkpoints, flip_byte

    from trainables.checkpoint import CHECKPOINT_STATE, resume_state

    for key, value in s3_server.items():
        monkeypatch.setenv(key, value)
    folders = _checkpoints(tmp_path / "trial", 3)
    flip_byte(folders[-1] / CHECKPOINT_STATE, "data/0")
    bucket, root = fs.FileSystem.from_uri("s3://ovatune/ray/job/trial")
    fs.copy_files(str(tmp_path / "trial"), root, destination_filesystem=bucket)
    newest = Checkpoint(f"{root}/{folders[-1].name}", bucket)
    state, _, source, problems = resume_state(newest, Checkpoint, "cpu")
    assert state is not None and state["epoch"] == 2 and source.path == f"{root}/{folders[1].name}"
    assert len(problems) == 1 and "does not match the SHA-256" in problems[0]


def test_a_storage_bucket_that_is_not_there_or_a_key_in_its_uri_is_one_error_before_ray_starts(s3_server, tmp_path):
    refused = run_ovatune("sweep", "digits", "--smoke-test", "--storage", "s3://no-such-bucket/ray",
                          home=tmp_path / "home", env=_user_env(s3_server), timeout=120)  # fmt: skip
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert lines == ["ovatune: error: the storage s3://no-such-bucket/ray: no bucket 'no-such-bucket' there; "
                     "create it, or pass another --storage"], lines  # fmt: skip
    assert not (tmp_path / "home" / "ray_results").exists()
    # a key in the URI is refused (Tune would write it into the sweep's state), and not repeated
    keyed = run_ovatune("sweep", "digits", "--smoke-test", "--storage", "s3://AKIA:s3cret/key@ovatune/ray",
                        home=tmp_path / "home", env=_user_env(s3_server), timeout=120)  # fmt: skip
    assert keyed.returncode == 2 and keyed.stderr.startswith("ovatune: error: --storage (or OVATUNE_STORAGE) carries")
    assert "s3cret" not in keyed.stdout + keyed.stderr and not (tmp_path / "home" / "ray_results").exists()
