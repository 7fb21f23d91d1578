"""GPU trials on a cluster whose GPU workers scale from zero: Ray's fake multi-node autoscaler, for real.

The head (2 CPUs, no GPU) runs `ray start --head --autoscaling-config=...` with provider
`fake_multinode`: a `gpu_worker` node type (2 CPUs, 1 GPU, `min_workers: 0`) exists only in the
config until something asks for a GPU. The fake GPU has no CUDA, so trials compute on the CPU: the
test asserts on the resources Ray assigned and on the node type that ran each trial.
"""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from launch import HEAD_GRACE_S, free_port, run_ovatune, stop_group

# `ray start` records its head in /tmp/ray/ray_current_cluster, which test_end_to_end's stale-record
# test rewrites: one worker runs them in turn (make test's pytest-xdist workers)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray_current_cluster")]

BIN = Path(sys.executable).parent


def _fake_cluster_config(gcs_port: int) -> dict:
    """A cluster-launcher config for Ray's fake multi-node provider (the wheel ships no example)."""
    return {
        "cluster_name": "ovatune-fake",
        "max_workers": 2,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 5,
        "provider": {
            "type": "fake_multinode",
            "gcs_address": f"127.0.0.1:{gcs_port}",  # the head started below, not Ray's default port
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "auth": {"ssh_user": "ubuntu"},
        "head_node_type": "ray.head.default",
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 2}, "node_config": {}, "max_workers": 0},
            "gpu_worker": {"resources": {"CPU": 2, "GPU": 1}, "node_config": {}, "min_workers": 0, "max_workers": 2},
        },
        **{
            key: []
            for key in (
                "cluster_synced_files",
                "rsync_exclude",
                "rsync_filter",
                "initialization_commands",
                "setup_commands",
                "head_setup_commands",
                "worker_setup_commands",
                "head_start_ray_commands",
                "worker_start_ray_commands",
            )
        },  # fmt: skip
        "file_mounts": {},
        "file_mounts_sync_continuously": False,
    }


@pytest.fixture
def autoscaling_cluster(tmp_path):
    """A fake autoscaling cluster with its own port and --temp-dir; stops only the processes it started."""
    port = free_port()
    config = tmp_path / "cluster.yaml"
    config.write_text(yaml.safe_dump(_fake_cluster_config(port)))
    temp_dir = tempfile.mkdtemp(prefix="rayfake", dir="/tmp")  # short: socket paths are limited
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_ADDRESS", "RAY_AUTH"))}
    env.update(RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1", PATH=f"{BIN}{os.pathsep}{env['PATH']}")
    # a `ray start` head uses token auth and refuses to start without a token: the cluster's own, in a
    # file of its own (a fresh machine has no ~/.ray/auth_token); its nodes and drivers read it there
    token_file = tmp_path / "auth_token"
    token_file.write_text(secrets.token_hex(32))
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file))
    head_log = tmp_path / "head.log"
    with open(head_log, "wb") as log:
        head = subprocess.Popen(
            [str(BIN / "ray"), "start", "--head", "--block", "--temp-dir", temp_dir, "--node-ip-address", "127.0.0.1",
             "--port", str(port), "--num-cpus", "2", f"--autoscaling-config={config}", "--include-dashboard", "false",
             "--disable-usage-stats"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.time() + 60
        while True:
            assert head.poll() is None and time.time() < deadline, (
                "the fake cluster's head did not start:\n" + head_log.read_text(errors="replace")[-3000:]
            )
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(1)
        time.sleep(3)  # the monitor starts right after the GCS
        yield f"127.0.0.1:{port}", env
    finally:
        stop_group(head, timeout=HEAD_GRACE_S)  # then SIGKILL: nothing of it is kept
        # the fake worker nodes' raylets are the monitor's children; any left name the temp dir
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if temp_dir in cmdline.read_bytes().decode(errors="replace"):
                    os.kill(int(cmdline.parent.name), signal.SIGKILL)
            except (OSError, ValueError):
                pass


def test_gpu_trials_make_the_autoscaler_launch_gpu_workers_and_run_there(autoscaling_cluster, tmp_path):
    address, env = autoscaling_cluster
    home = tmp_path / "home"

    # a request no node type can hold: refused before any trial starts, naming the node types
    refused = run_ovatune("sweep", "digits", "--losses", "softmax", "--trials", "1", "--gpus-per-trial", "2",
                          "--address", address, home=home, env=env, timeout=600)  # fmt: skip
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    error = refused.stderr.strip().splitlines()[-1]
    assert error.startswith("ovatune: error:") and "gpu_worker (2 CPU, 1 GPU, up to 2)" in error
    assert "ray.head.default (2 CPU, up to 1)" in error and "Traceback" not in refused.stderr
    assert "Trial name" not in refused.stdout  # no trial ran

    # 1 GPU per trial while no GPU node is up: the trials ask for it, the autoscaler brings gpu_workers
    run = run_ovatune("run", "digits", "--losses", "softmax,ova_dm", "--trials", "2", "--epochs", "2",
                      "--gpus-per-trial", "1", "--cpus-per-trial", "1", "--address", address, home=home,
                      env=env, timeout=600)  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    assert "trials run on the CPU" not in output
    assert "no GPU node is up yet" in output and "launches gpu_worker nodes" in output
    assert "(1 GPU each)" in output  # evaluation asks for the GPU node type too

    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("digits").experiment_id
    trials = client.search_runs([experiment], "tags.`ovatune.kind` = 'trial'")
    assert len(trials) == 4 and all(t.info.status == "FINISHED" for t in trials)
    for trial in trials:
        tags = trial.data.tags
        assert tags["ovatune.node_type"] == "gpu_worker", tags
        assert tags["ovatune.gpu_ids"] == "0"  # the fake node's one GPU, assigned to the trial
    head_node = "fffffffffffffffffffffffffffffffffffffffffffffffffff00000"  # the fake provider's head id
    assert all(t.data.tags["ovatune.node_id"] != head_node for t in trials)
    results = list((home / "ray_results").glob("digits-*/*/result.json"))
    assert len(results) == 4
    for result in results:
        first = json.loads(result.read_text().splitlines()[0])
        assert first["gpu_ids"] == "0" and first["node_id"] != head_node
