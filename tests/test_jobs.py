"""`ovatune submit | status | logs` against a real Ray head (`ray start`) with its dashboard on 127.0.0.1
and Ray's token authentication: the Jobs API and the dashboard answer only requests with the token."""

import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from launch import HEAD_GRACE_S, free_port, run_ovatune, stop_group

# `ray start` records its head in /tmp/ray/ray_current_cluster, which test_end_to_end's stale-record
# test rewrites: one worker runs them in turn (make test's pytest-xdist workers)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray_current_cluster")]

BIN = Path(sys.executable).parent


def _current_cluster() -> str | None:
    """What /tmp/ray/ray_current_cluster says (the cluster a bare ray.init() would join), if anything."""
    path = Path("/tmp/ray/ray_current_cluster")
    return path.read_text() if path.exists() else None


def _status_of(url: str, token: str | None) -> int:
    """The HTTP status the head's dashboard answers ``url`` with (``token``: sent as Ray's clients send it)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_submit_a_sweep_as_a_ray_job_and_follow_it(tmp_path):
    # the cluster's nodes have the project installed and on PATH, as the image gives them
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_ADDRESS", "RAY_AUTH"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    # the head's token, in a file of its own (not this machine's ~/.ray/auth_token); ovatune finds it
    # through RAY_AUTH_TOKEN_PATH, as a user's laptop would after copying it from the head
    token = secrets.token_hex(32)
    token_file = tmp_path / "auth_token"
    token_file.write_text(token)
    env["RAY_AUTH_TOKEN_PATH"] = str(token_file)
    dashboard = free_port()
    # --block keeps `ray start` in the foreground with the head's processes in its session, so the
    # test stops exactly this cluster (`ray stop` would stop every Ray on the machine)
    # its own --temp-dir (short: socket paths are limited), so the address `ray start` records for
    # `ray.init()` to find does not outlive the test in /tmp/ray
    temp_dir = tempfile.mkdtemp(prefix="rayjob", dir="/tmp")
    recorded_before = _current_cluster()
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--temp-dir", temp_dir,
         "--node-ip-address", "127.0.0.1", "--port", str(free_port()),
         "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard), "--num-cpus", "2",
         "--include-dashboard", "true", "--disable-usage-stats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**env, "RAY_AUTH_MODE": "token"},
        start_new_session=True,
    )  # fmt: skip
    address = f"http://127.0.0.1:{dashboard}"
    home = tmp_path / "home"
    try:
        deadline = time.time() + 120
        while run_ovatune("status", "--dashboard", address, env=env, timeout=300).returncode != 0:
            assert time.time() < deadline and head.poll() is None, "the Ray head did not come up"
            time.sleep(2)
        # without the token, or with a wrong one, neither the Jobs API nor the dashboard's data answer
        for path in ("/api/jobs/", "/api/cluster_status", "/nodes?view=summary"):
            assert _status_of(address + path, None) == 401, path
            assert _status_of(address + path, "0" * 64) in (401, 403), path
            assert _status_of(address + path, token) == 200, path
        for refused_command in (("status",), ("submit", "digits", "--smoke-test", "--home", str(home)),
                                ("logs", "raysubmit_x")):  # fmt: skip
            refused = run_ovatune(*refused_command, "--dashboard", address, env={**env, "RAY_AUTH_TOKEN": "0" * 64},
                                  timeout=300)  # fmt: skip
            lines = [line for line in refused.stderr.splitlines() if line.strip()]
            assert refused.returncode == 2 and len(lines) == 1 and "Ray Jobs API at" in lines[0], refused.stderr
        for _ in range(10):  # the head answers before its job agent is ready to take jobs
            submitted = run_ovatune("submit", "digits", "--smoke-test", "--losses", "softmax", "--home", str(home),
                                    "--dashboard", address, env=env, timeout=300)  # fmt: skip
            if submitted.returncode == 0:
                break
            time.sleep(3)
        assert submitted.returncode == 0, submitted.stderr[-2000:]
        job_id = re.search(r"submitted (\S+)", submitted.stdout).group(1)

        deadline, state = time.time() + 300, ""
        while time.time() < deadline:
            state = run_ovatune("status", job_id, "--dashboard", address, env=env, timeout=300).stdout
            if "SUCCEEDED" in state or "FAILED" in state or "STOPPED" in state:
                break
            time.sleep(3)
        logs = run_ovatune("logs", job_id, "--dashboard", address, env=env, timeout=300).stdout
        assert "SUCCEEDED" in state, state + logs[-3000:]
        assert "ovatune sweep digits --smoke-test --losses softmax" in state and "--address auto" in state
        assert "sweep digits-" in logs and "ovatune-digits-softmax@champion" in logs
        # the old spelling still works, and says so
        listed = run_ovatune("status", "--address", address, env=env, timeout=300)
        assert job_id in listed.stdout and "ovatune: warning: --address is now --dashboard" in listed.stderr
        assert set(re.findall(r"raysubmit_\w+", listed.stdout)) == {job_id}  # the refused submit left no job

        client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
        trials = client.search_runs([client.get_experiment_by_name("digits").experiment_id],
                                    "tags.`ovatune.kind` = 'trial'")  # fmt: skip
        assert len(trials) == 1 and trials[0].info.status == "FINISHED"

        with_password = run_ovatune("submit", "digits", "--smoke-test", "--tracking-uri", "http://u:hunter2@h:5000",
                                    "--dashboard", address, env=env, timeout=300)  # fmt: skip
        assert with_password.returncode == 2 and "would be stored in the job's entrypoint" in with_password.stderr
        assert "hunter2" not in with_password.stderr + run_ovatune("status", "--dashboard", address, env=env).stdout
        for output in (submitted.stdout + submitted.stderr, state, logs, listed.stdout + listed.stderr):
            assert token not in output

        unknown = run_ovatune("status", "raysubmit_nope", "--dashboard", address, env=env, timeout=300)
        assert unknown.returncode == 2 and "Ray Jobs API at" in unknown.stderr
    finally:
        stop_group(head, timeout=HEAD_GRACE_S)  # then SIGKILL: nothing of it is kept
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert _current_cluster() == recorded_before  # no stale address left for the next ray.init()


def test_submit_without_a_dashboard_says_what_to_pass(capsys, monkeypatch):
    from tuning.cli import main

    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    for command in (["status"], ["logs", "raysubmit_x"], ["submit", "digits"]):
        assert main(command) == 2
        assert "--dashboard http://HEAD:8265" in capsys.readouterr().err
