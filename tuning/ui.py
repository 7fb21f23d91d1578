"""The process `ovatune ui` becomes once the store is checked: it runs ``mlflow server`` and owns it.

Standard library only, on purpose. The CLI imports torch, Ray and MLflow (about 770 MB resident)
to check the store and parse its options; it then replaces itself with this module (``os.execv``,
same PID), so what stays alive to supervise the server is a bare Python of a few MB, and signals
sent to ovatune's PID (Ctrl-C, ``kill``) still reach the supervisor.

    python -m tuning.ui mlflow server --backend-store-uri ... --host ... --port ...
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys


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
    server = subprocess.Popen(command, start_new_session=True, env=environment)
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
        return 0
    return code


if __name__ == "__main__":
    sys.exit(supervise([sys.executable, "-m", *sys.argv[1:]]))
