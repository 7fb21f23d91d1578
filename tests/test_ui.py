"""``ovatune ui`` (``tuning.ui`` and ``commands.ui``): MLflow's server on loopback over the home's
store, a signal stops its whole process tree, a busy port is one error line. Real servers, real signals."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tuning.ui import GUARD

from launch import free_port, run_ovatune, start_ovatune, wait_for

pytestmark = pytest.mark.slow


def store(home: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{home / 'mlflow.db'}")


def _start_ui(home: Path, port: int) -> subprocess.Popen:
    """``ovatune ui --port PORT`` in a session of its own, its output captured."""
    return start_ovatune("ui", "--port", str(port), home=home,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip


def _healthy(port: int) -> bool:
    """Whether an MLflow server answers its health check on ``port``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_ui_serves_the_store_on_loopback(home):
    client = store(home)  # creates the SQLite store
    client.create_experiment("digits")
    port = free_port()
    server = _start_ui(home, port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _healthy(port), 120, "the MLflow server")
        with urllib.request.urlopen(f"{url}/api/2.0/mlflow/experiments/search?max_results=10", timeout=10) as response:
            names = [e["name"] for e in json.load(response)["experiments"]]
        assert "digits" in names
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200 and "<html" in response.read().decode().lower()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _leave_in_time_wait(port: int) -> None:
    """Leave a closed connection on ``port`` whose server side waits out TIME_WAIT (60 s on Linux)."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        with socket.create_connection(("127.0.0.1", port)) as client:
            served, _ = listener.accept()
            served.close()  # the server closes first, as MLflow's does after a response: its side waits
            assert client.recv(1) == b""
    with socket.socket() as plain, pytest.raises(OSError):  # a bind without SO_REUSEADDR is refused now
        plain.bind(("127.0.0.1", port))


def _session(process) -> int | None:
    try:
        return os.getsid(process.pid)
    except OSError:  # gone meanwhile
        return None


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ui_stops_its_whole_server_on_a_signal_and_refuses_a_busy_port(home, signum):
    import psutil

    store(home).create_experiment("digits")
    port = free_port()
    ui = _start_ui(home, port)
    try:
        wait_for(lambda: _healthy(port), 120, "the MLflow server")
        started = psutil.Process(ui.pid).children(recursive=True)
        assert started, "the UI server runs in processes of its own"
        if signum == signal.SIGINT:  # the lightest server that serves the UI: no job-execution consumers
            time.sleep(12)  # MLflow starts those some seconds after the server answers, outside its tree
            (server,) = [p for p in psutil.Process(ui.pid).children() if GUARD not in p.cmdline()]
            session = os.getsid(server.pid)
            tree = [p for p in psutil.process_iter(["cmdline"]) if _session(p) == session]
            assert len(tree) <= 2 and not [p for p in tree if "huey" in " ".join(p.info["cmdline"] or [])], tree
            # and what supervises it is a bare Python, not the CLI with torch, Ray and MLflow (~770 MB)
            assert psutil.Process(ui.pid).memory_info().rss < 100 * 2**20
        ui.send_signal(signum)  # to ovatune's own PID, as `kill` or a terminal's Ctrl-C would
        assert ui.wait(timeout=60) == 0
        output = ui.stdout.read()
        assert "Warning" not in output  # no library's warnings meant for its developers
        # what the user must know (the link), none of MLflow's or uvicorn's start and stop notices
        lines = [line for line in output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("MLflow UI for"), output
        _, alive = psutil.wait_procs(started, timeout=20)
        assert not alive, [p.cmdline() for p in alive]  # no server process outlives ovatune
        if signum == signal.SIGTERM:  # and the port serves again, even while TIME_WAIT holds it
            _leave_in_time_wait(port)  # as a browser's visit leaves it: `ovatune ui` refused it before
            ui = _start_ui(home, port)
            wait_for(lambda: _healthy(port), 120, "the MLflow server started again")
            ui.send_signal(signum)
            assert ui.wait(timeout=60) == 0
    finally:
        if ui.poll() is None:
            os.killpg(ui.pid, signal.SIGKILL)

    with socket.socket() as busy:  # a port already in use: one error line, nothing started
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        refused = run_ovatune("ui", "--port", str(taken), home=home, timeout=60)
    assert refused.returncode == 1
    assert refused.stderr.startswith("ovatune: error:") and f"port {taken}" in refused.stderr
    assert "MLflow UI for" not in refused.stdout


def test_a_killed_ui_leaves_no_server_on_its_port(home):
    """SIGKILL runs no handler: the server used to stay on the port, and the next `ovatune ui` there
    was refused ("address already in use") by a server nothing named."""
    import psutil

    store(home).create_experiment("digits")
    port = free_port()
    started = []
    ui = _start_ui(home, port)
    try:
        wait_for(lambda: _healthy(port), 120, "the MLflow server")
        started = psutil.Process(ui.pid).children(recursive=True)
        ui.kill()  # SIGKILL to ovatune's own PID, as the OOM killer or `kill -9` would
        ui.wait(timeout=30)
        _, alive = psutil.wait_procs(started, timeout=40)
        assert not alive, [p.cmdline() for p in alive]  # the server and its guard are gone too
        again = _start_ui(home, port)
        wait_for(lambda: _healthy(port), 120, "a new server on the same port")
        assert again.poll() is None  # it serves: the port was free for it
        again.send_signal(signal.SIGTERM)
        assert again.wait(timeout=60) == 0
    finally:  # a server that outlived its ui is no longer this test's child: kill what was started
        for process in started:
            if process.is_running():
                process.kill()
