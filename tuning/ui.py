"""The process `ovatune ui` becomes once the store is checked: it runs ``mlflow server`` and owns it.

Standard library only, on purpose. The CLI imports torch, Ray and MLflow (about 770 MB resident)
to check the store and parse its options; it then replaces itself with this module (``os.execv``,
same PID), so what stays alive to supervise the server is a bare Python of a few MB, and signals
sent to ovatune's PID (Ctrl-C, ``kill``) still reach the supervisor.

    python -m tuning.ui mlflow server --backend-store-uri ... --host ... --port ...

Beside the server runs a guard (``python -m tuning.ui --guard PGID``) that stops it if the
supervisor dies without running its handlers (SIGKILL, the OOM killer).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO


def supervise(command: list[str]) -> int:
    """Run ``command`` (the MLflow server) until interrupted (Ctrl-C, SIGTERM or SIGHUP).

    The server is a tree of processes (MLflow's app server and its workers) in a process group of
    its own: whichever signal stops the supervisor stops every process of that group, so no stale
    server keeps the port.

    Returns:
        0 when a signal stopped it, otherwise the server's own exit status.
    """
    # MLflow 3's server also starts job-execution consumers (huey; for GenAI jobs, ~7 processes of
    # ~240 MB each); browsing runs and models needs only the app server and its one uvicorn worker.
    environment = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    # MLflow's own import of a deprecated Starlette module: a warning meant for MLflow's developers
    quiet = "ignore:starlette.middleware.wsgi is deprecated"
    environment["PYTHONWARNINGS"] = ",".join(filter(None, [environment.get("PYTHONWARNINGS"), quiet]))
    server = subprocess.Popen(command, start_new_session=True, env=environment, stderr=subprocess.PIPE)
    copier = threading.Thread(target=_pass_on, args=(server.stderr, _loopback(command)), daemon=True)
    copier.start()
    # A SIGKILL of the supervisor runs no handler: a guard of its own stops the server then. It waits
    # on a pipe that only this process holds open, so it hears of the supervisor's end however it came.
    guard = subprocess.Popen([sys.executable, "-m", "tuning.ui", GUARD, str(server.pid)], stdin=subprocess.PIPE,
                             start_new_session=True)  # fmt: skip
    stopped_by: list[int] = []

    def stop(signum, frame) -> None:
        stopped_by.append(signum)
        try:
            os.killpg(server.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    code = server.wait()
    if stopped_by:
        try:
            server.wait(timeout=15)
        finally:
            try:  # whatever of the group outlived SIGTERM
                os.killpg(server.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        copier.join(timeout=5)  # its last lines (a shutdown warning) reach the user
        return 0
    guard.stdin.close()  # the server ended by itself: the guard has nothing left to stop
    copier.join(timeout=5)  # the error that ended it reaches the user (a grandchild may hold the pipe)
    return code


# MLflow's notice at every start when it serves only this machine (the default): what ovatune's own
# line (the link) already implies. Served to other hosts, it is kept: it says what else to configure.
LOOPBACK_NOTICE = "[MLflow] Security middleware enabled with default settings (localhost-only)"


def _loopback(command: list[str]) -> bool:
    """Whether ``command`` (``mlflow server ...``) serves on a loopback address only."""
    host = command[command.index("--host") + 1] if "--host" in command else "127.0.0.1"
    return host in ("127.0.0.1", "localhost", "::1")


def _pass_on(stream: IO[bytes], loopback: bool) -> None:
    """Copy the server's stderr to ours line by line, less :data:`LOOPBACK_NOTICE` on loopback.

    It reads to the end whatever happens to our stderr (a closed terminal, a pipe into ``head``):
    a server whose stderr nobody drained would block on its next warning and the UI would hang.
    """
    for line in iter(stream.readline, b""):
        if loopback and line.decode(errors="replace").startswith(LOOPBACK_NOTICE):
            continue
        try:
            sys.stderr.buffer.write(line)
            sys.stderr.flush()
        except (OSError, ValueError):  # our stderr is gone: keep draining the server's
            pass


def stop_when_orphaned(group: int, grace_s: float = 15.0) -> None:
    """The guard: wait until the supervisor's end of stdin closes (it exited, or was killed), then
    stop the server's process ``group``: SIGTERM, and SIGKILL to what outlives ``grace_s``."""
    sys.stdin.buffer.read()
    try:
        os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            time.sleep(0.2)
            os.killpg(group, 0)  # ProcessLookupError once every process of the group is gone
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass


GUARD = "--guard"

if __name__ == "__main__":
    if sys.argv[1:2] == [GUARD]:
        stop_when_orphaned(int(sys.argv[2]))
    else:
        sys.exit(supervise([sys.executable, "-m", *sys.argv[1:]]))
