"""The one way tests launch the ``ovatune`` command: the installed console script, as a user runs it.

In-process ``tuning.cli.main([...])`` is for fast checks of what the CLI refuses before anything
starts (``test_cli.py``), and for sequences of commands on one local Ray that check what they print
and record (conftest's ``in_process``); everything that checks how a command's process starts, ends,
takes a signal or leaves its processes, and every server or job, goes through here.

The child's environment is this process's without ``MLFLOW_TRACKING_URI``: ``mlflow.set_tracking_uri``
exports it, so an earlier in-process test's store would otherwise leak into the command.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

OVATUNE = str(Path(sys.executable).parent / "ovatune")  # the console script beside this Python


def environment(**extra: str) -> dict[str, str]:
    """This process's environment without ``MLFLOW_TRACKING_URI``, plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, **extra}


def ovatune_command(*args: str, home: str | Path | None = None) -> list[str]:
    """``ovatune ARGS [--home HOME]`` as an argv list."""
    return [OVATUNE, *args, *(["--home", str(home)] if home is not None else [])]


def run_ovatune(
    *args: str,
    home: str | Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 900,
    check: bool = False,
) -> subprocess.CompletedProcess:
    """Run ``ovatune ARGS`` to the end and capture its output.

    Args:
        home: passed as ``--home`` when given.
        env: the child's whole environment (default: :func:`environment`).
        check: assert exit code 0, showing the tail of both streams when not.
    """
    result = subprocess.run(
        ovatune_command(*args, home=home),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env if env is not None else environment(),
    )
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def start_ovatune(
    *args: str, home: str | Path | None = None, env: dict[str, str] | None = None, **popen
) -> subprocess.Popen:
    """Start ``ovatune ARGS`` without waiting (for signals, servers, concurrent sweeps); ``popen``
    goes to ``subprocess.Popen`` (stdout, stderr, start_new_session, ...)."""
    return subprocess.Popen(ovatune_command(*args, home=home), env=env if env is not None else environment(), **popen)


# A `ray start --block` head took 33 s to end after SIGTERM (measured in test_jobs and
# test_autoscaling, exit code 1): a test that keeps nothing of its cluster gives it this long, then
# SIGKILLs the rest of its group.
HEAD_GRACE_S = 3


def stop_group(process: subprocess.Popen, timeout: float = 60) -> None:
    """Stop ``process`` and its whole process group (started with ``start_new_session=True``):
    SIGTERM, then SIGKILL to whatever of the group outlives ``timeout``. A group already gone (the
    process failed to start, or ended on its own) is stopped already."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    try:  # whatever of the group outlived SIGTERM
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


MARKER = "OVATUNE_TEST_MARKER"


def marked_processes(marker: str) -> list[str]:
    """The live processes (zombies aside) whose environment has ``OVATUNE_TEST_MARKER=marker``: a
    command started with ``environment(OVATUNE_TEST_MARKER=marker)`` and everything it started,
    a local Ray's GCS, raylet, agents and workers included. As "pid name" strings, for messages."""
    import psutil

    found = []
    for process in psutil.process_iter(["pid", "name", "status"]):
        if process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if process.environ().get(MARKER) == marker:
                found.append(f"{process.info['pid']} {process.info['name']}")
        except psutil.Error:  # ended meanwhile, or not ours to read
            pass
    return found


def free_port() -> int:
    """A loopback TCP port nothing listens on (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout: float, what: str) -> None:
    """Poll ``condition()`` every 0.5 s until it is true; fail naming ``what`` after ``timeout`` s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def signal_when(process: subprocess.Popen, ready, signum: int, to_group: bool = True, what="the signal",
                timeout: float = 300) -> str:  # fmt: skip
    """Send ``signum`` to ``process`` (started with ``start_new_session=True``; to its whole group, or
    to it alone) once ``ready()`` is true, and return its stdout when it has ended; fails when it ends
    before, or after ``timeout`` s, naming ``what`` (a str, or a callable read then). Whatever of its
    group is left is SIGKILLed."""
    try:
        deadline = time.time() + timeout
        while not ready():
            assert time.time() < deadline and process.poll() is None, (
                f"it ended or timed out before {what() if callable(what) else what}"
            )
            time.sleep(0.2)
        (os.killpg if to_group else os.kill)(process.pid, signum)
        output, _ = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return output


def sigterm_at_mark(phase: str, args: tuple[str, ...], home: Path, tmp_path: Path) -> tuple[int, str, str]:
    """``ovatune *args`` paused at the timeline mark ``phase`` (``OVATUNE_PAUSE_AT``, announced on its
    stderr), sent SIGTERM there: (its exit code, its stdout, its stderr)."""
    errors = tmp_path / f"stderr-{phase.replace(' ', '-')}.txt"
    with errors.open("w") as stderr:
        command = start_ovatune(*args, home=home, env=environment(OVATUNE_PAUSE_AT=f"{phase}=120"),
                                stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True)  # fmt: skip
        output = signal_when(command, lambda: f"ovatune: paused at {phase}" in errors.read_text(), signal.SIGTERM,
                             to_group=False, what=lambda: f"pausing at {phase}: {errors.read_text()[-3000:]}")  # fmt: skip
    return command.returncode, output, errors.read_text()
