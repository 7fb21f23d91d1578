"""One driver per job: a lock beside the job's Tune folder, held by the process that runs it.

Two drivers of one sweep (two ``--resume`` at once, or a resume while the sweep still runs) would
both restore its trials: duplicate trial runs, champions registered from runs another driver
marked failed. The lock is ``flock`` on ``.<job>.driver`` beside the job's folder (in the home's
``ray_results`` when Tune's storage is a bucket, which has no lock: it then keeps apart only this
machine's drivers): the kernel releases
it when its process ends however it ends (a SIGKILL included), so a dead driver never blocks the
resume that follows. The file says who holds it (process, host, since when), never the command
line (which may carry a tracking URI's password).
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

_HELD: dict[Path, int] = {}  # lock file -> the descriptor this process holds it by


class JobLocked(ValueError):
    """Another process runs the job."""


def lock_path(ray_results: Path, name: str) -> Path:
    return ray_results / f".{name}.driver"


def lock_job(ray_results: Path, name: str, noun: str = "job") -> None:
    """Hold job ``name``'s lock for this process (again: nothing to do).

    Raises:
        JobLocked: another process holds it; the message names that process.
    """
    path = lock_path(ray_results, name)
    if path in _HELD:
        return
    ray_results.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 1000).decode(errors="replace").strip() or "a process that has not said which"
        os.close(fd)
        raise JobLocked(f"{noun} {name!r} is being run by another ovatune ({holder}); wait for it to end, or "
                        "stop it (Ctrl-C there, or kill -INT its pid) and resume then") from None  # fmt: skip
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
    _HELD[path] = fd


def release_job(ray_results: Path, name: str) -> None:
    """Let go of job ``name``'s lock, if this process holds it (the file stays: removing it would let
    a process that opened it before the removal lock a file nobody else sees)."""
    fd = _HELD.pop(lock_path(ray_results, name), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock
