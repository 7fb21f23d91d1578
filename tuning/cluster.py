"""The Ray cluster: connecting to it (or starting a local one), and ending a local one at exit.

``init_ray`` is the one place the driver connects (sweeps and evaluations alike), with the worker
environment every trial and evaluation task gets. What the cluster can run is ``tuning.resources``.
"""

from __future__ import annotations

import _thread
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NoReturn

from trainables import VERBOSE_ENV, verbose
from tuning.timeline import mark


def use_cluster_token() -> None:
    """Send Ray's auth token to an existing cluster when one is available (``RAY_AUTH_TOKEN``,
    ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``): what Ray's own CLI does, turning token mode on
    when a token exists and ``RAY_AUTH_MODE`` is unset. A ``ray start`` head requires it."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray without token authentication
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def worker_environment(address: str | None) -> dict[str, str]:
    """Environment variables for Ray's worker processes (trials, evaluation): jemalloc, kept warm.

    Why: a training step on the CPU frees and re-allocates the same activation-sized buffers (tens
    of MB) every step. glibc's malloc and jemalloc's defaults hand such buffers back to the kernel
    as soon as they are freed, so every step pays again for page faults and for the kernel zeroing
    fresh pages, and in a many-threaded Ray worker each unmap also costs a TLB shoot-down. jemalloc
    with purging turned off keeps them. Measured on the 2-core machine, ResNet-20 at batch 512
    (``benchmarks/train_throughput.py``): an ovatune trial trains at 173 images/s, a bare loop with
    the system malloc at 115. PyTorch's performance tuning guide recommends jemalloc (or TCMalloc)
    for CPU training; the cost of never purging is that a worker keeps its peak memory until it exits.

    The library is the jemalloc that Ray ships (``ray/core/libjemalloc.so``). Nothing is set when
    the user's environment already sets ``LD_PRELOAD`` or ``MALLOC_CONF`` (their choice wins), off
    Linux, or for a Ray Client address (``ray://``), whose workers run on machines whose paths
    this one cannot know.
    """
    import ray

    jemalloc = Path(ray.__file__).parent / "core" / "libjemalloc.so"
    mine = {"LD_PRELOAD", "MALLOC_CONF"} & os.environ.keys()
    if sys.platform != "linux" or not jemalloc.exists() or mine or (address or "").startswith("ray://"):
        return {}
    return {"LD_PRELOAD": str(jemalloc), "MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1"}


# Ray Train's controller takes a multi-worker trial's reports when it polls the workers, every
# RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (2 s by default), and each worker's ray.train.report waits for
# that poll: no epoch of such a trial was shorter than 2 s. Measured on the 2-core machine, digits
# with 2 workers per trial: 2.00 s per epoch; 0.25 s at this interval. A poll is one small task per
# worker; a hanging one still counts as a missed health check only after Ray's own timeout (10 min).
TRAIN_POLL_INTERVAL_S = "0.25"


def train_environment() -> dict[str, str]:
    """Environment variables for Ray Train's controllers (multi-worker trials): the poll interval
    above, unless the user's environment sets Ray's variable (their choice wins)."""
    key = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
    return {key: os.environ.get(key, TRAIN_POLL_INTERVAL_S)}


def settle_local_worker_signals() -> None:
    """Run at the start of every worker of a local Ray this driver starts (Ray's
    ``worker_process_setup_hook``): a terminal's Ctrl-C is ignored, and a SIGTERM that lands inside
    a finalizer ends the worker instead of printing a traceback (:func:`_exit_where_python_can`).

    Why SIGINT is ignored: Ctrl-C in a terminal sends SIGINT to the whole foreground process group,
    and a local Ray's workers are in it. The driver already stops the sweep cleanly
    (``tuning.interruption``: Tune stops its trials and saves its state); a worker's own
    KeyboardInterrupt only races with that, and where it lands in a callback on the worker's main
    thread (a weakref's, a logger's) the worker prints a traceback that Ray forwards to the user's
    terminal. Workers of a cluster are not in the user's terminal's group and keep Ray's handling.
    The cost: ``ray.cancel`` (without ``force``) cannot interrupt a running task of a local Ray,
    which ovatune never asks for. Inherited by what a worker starts (data loader workers).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.unraisablehook = _exit_where_python_can


def _exit_where_python_can(unraisable) -> None:
    """``sys.unraisablehook`` of a local Ray's workers: an exit that landed where Python cannot raise
    it (a weakref's or ``__del__``'s callback) is delivered again, to run where it can.

    Why: when the driver shuts its local Ray down (a command's end, a SIGTERM to the driver), the
    raylet sends each worker SIGTERM, and Ray's handler in the worker raises SystemExit. Landed in a
    finalizer, Python prints "Exception ignored in ... Traceback ... SystemExit" instead of exiting,
    Ray forwards that to the user's terminal, and the worker lives on until it is killed. Sending
    the signal again runs Ray's handler once the callback has returned, where its SystemExit ends the
    worker as Ray means it to. It is sent from a new thread, which runs once this thread lets go of
    the GIL, past this hook: sent from here, Python would run the handler at once, still inside the
    hook (``_thread``'s start does not wait for the thread, as ``threading``'s does). Anything else
    goes to Python's own hook.
    """
    if issubclass(unraisable.exc_type, SystemExit):
        _thread.start_new_thread(signal.pthread_kill, (threading.main_thread().ident, signal.SIGTERM))
    else:
        sys.__unraisablehook__(unraisable)


def _not_token_notice(record: logging.LogRecord) -> bool:
    """Ray announces at every start that token authentication is on (its default): a notice, not a
    problem, and otherwise the first line of every command. Only that line is dropped."""
    return "Token authentication is enabled" not in record.getMessage()


def lost_node(error: object) -> bool:
    """Whether a trial's ``error`` (the exception, or the text Tune keeps of it) is the loss of the node
    it ran on: Tune then starts the trial again elsewhere from its last checkpoint."""
    from ray.exceptions import NodeDiedError

    return isinstance(error, NodeDiedError) or "its node has died" in str(error)


def _not_a_lost_node(record: logging.LogRecord) -> bool:
    return not (record.exc_info and record.exc_info[1] is not None and lost_node(record.exc_info[1]))


def quiet_lost_nodes() -> None:
    """Keep Ray Tune from logging a trial's lost node as an error with its traceback: the trial goes
    on elsewhere, and ``tuning.progress.TrialRetries`` says so in one line (idempotent)."""
    log = logging.getLogger("ray.tune.execution.tune_controller")
    if _not_a_lost_node not in log.filters:
        log.addFilter(_not_a_lost_node)


def quiet_ray_notices() -> None:
    """Drop Ray's notices that are not problems (``--verbose`` keeps them)."""
    logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(_not_token_notice)


def init_ray(address: str | None, dashboard: bool = False, meanwhile: Callable[[], object] | None = None) -> None:
    """Connect to a cluster (``address``; "auto" finds the one this machine belongs to) or start a
    local Ray, with its dashboard only when asked (``dashboard``: Ray Train's multi-worker trials
    query the state API it serves). Workers get :func:`worker_environment` and :func:`train_environment`.

    ``meanwhile``: what the command needs next (imports: torch, the promotion code), done on a
    thread while ``ray.init`` waits for Ray's processes to come up. It must be safe to do again: what
    fails there is not reported, and fails again, with its traceback, where the command does it.
    """
    global _connection
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no telemetry calls from a laptop
    # Ray Tune snapshots the experiment whenever a trial has rotated out its kept checkpoints, and
    # warns when that happens often, which short trials do by design: the snapshots are what
    # make --resume exact, so keep them and drop the warning.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # The compact status table (CLIReporter) instead of a config box per trial start.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # A local Ray prestarts one idle worker per CPU for its first driver's tasks. ovatune's trials and
    # tasks run with their own runtime environment, which those workers lack: they never ran anything
    # and cost each command two processes and about 1 CPU s of 15 (benchmarks/command_cpu.py). The
    # raylet this process starts reads it from the environment it inherits.
    os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
    workers = worker_environment(address) | train_environment()
    if verbose():  # the trials keep Ray's INFO lines too (trainables.VERBOSE_ENV)
        workers[VERBOSE_ENV] = "1"
    if address is None:  # spot preemption cannot happen to a local Ray: no watcher actor per trial
        workers["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] = "0"
    wanted = _connection_for(address, dashboard, workers)
    if ray.is_initialized() and not _serves(wanted):
        ray.shutdown()
    if not ray.is_initialized():
        # "local": without an address, always a new local Ray. Ray's own default would join the last
        # cluster `ray start` recorded in /tmp/ray, and hang when that cluster is gone.
        # ray.init mostly waits (processes starting, the GCS answering): an import costs no wall time there
        ahead = threading.Thread(target=_quietly, args=(meanwhile,), daemon=True)
        ahead.start()
        handlers = _python_signal_handlers()
        try:
            ray.init(
                address=address or "local",
                include_dashboard=dashboard,
                log_to_driver=True,
                logging_level="WARNING",
                runtime_env={"env_vars": dict(workers)}  # a copy: Ray adds its own variables to it
                | ({"worker_process_setup_hook": settle_local_worker_signals} if address is None else {}),
            )
        finally:
            ahead.join()  # no half-imported module behind an error or an interrupt
        _restore(handlers)
        _connection = replace(wanted, node_id=ray.get_runtime_context().get_node_id())
        mark("ray started")


def _python_signal_handlers() -> dict[int, Callable]:
    """The Python handlers of SIGINT and SIGTERM (``tuning.interruption``'s, Python's own for SIGINT),
    where this is the main thread (only it can set them)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    found = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    return {s: handler for s, handler in found.items() if callable(handler)}


def _restore(handlers: dict[int, Callable]) -> None:
    """Set ``handlers`` again. Why: Ray's core installs its own SIGTERM handler as it starts (it logs
    a stack and ends the process with code 15), under Python's; a command that stops cleanly on
    SIGTERM while Ray runs (an evaluation: a message, the command to evaluate again, exit 143) would
    otherwise just die."""
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def _quietly(work: Callable[[], object] | None) -> None:
    try:
        if work is not None:
            work()
    except Exception:  # noqa: BLE001 - raised again, with its traceback, where the command does it
        pass


# What a local Ray's workers read from the environment they inherit from this process when it
# starts (trainables.data, trainables.cache, MLflow's credentials when an evaluation loads a model).
INHERITED = ("OVATUNE_DATA_DIR", "XDG_CACHE_HOME", "HOME", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
             "MLFLOW_TRACKING_TOKEN")  # fmt: skip


@dataclass(frozen=True)
class _Connection:
    """The Ray init_ray connected this process to: its head node, the address asked for (None: a
    local Ray it started), whether with the dashboard, the environment its workers get (set, and
    for a local Ray, inherited)."""

    node_id: str
    address: str | None
    dashboard: bool
    workers: tuple[tuple[str, str], ...]


# The Ray init_ray connected this process to last, if it did.
_connection: _Connection | None = None


def _made_by_init_ray() -> bool:
    import ray

    return (
        ray.is_initialized()
        and _connection is not None
        and _connection.node_id == ray.get_runtime_context().get_node_id()
    )


def _connection_for(address: str | None, dashboard: bool, workers: dict[str, str]) -> _Connection:
    """What a command that asks for these needs, on any head node."""
    inherited = {key: os.environ[key] for key in INHERITED if key in os.environ} if address is None else {}
    return _Connection("", address, dashboard, tuple(sorted((inherited | workers).items())))


def _serves(wanted: _Connection) -> bool:
    """Whether the Ray this process is connected to serves a command that wants ``wanted``: in one
    process, a later command (``tuning.cli.main`` called again: the tests' in-process commands, a
    notebook) reuses what an earlier one connected to, unless it asks for another address, the
    dashboard (Ray Train's multi-worker trials need it) that Ray was started without, or other
    worker settings. A Ray connected by other code (``ray.init`` before the command) is used as it is."""
    if not _made_by_init_ray():
        return True
    held = _connection
    return (
        held.address == wanted.address and (held.dashboard or not wanted.dashboard) and held.workers == wanted.workers
    )


def exit_process(code: int) -> NoReturn:
    """End the ``ovatune`` process with ``code`` as Python's own exit would, less the teardown of its
    modules at the end, and a local Ray it started at once with it.

    Why: Ray's exit hook (``ray.shutdown``) stops a local Ray process by process and waits for each:
    2-4 s at the end of every command (``benchmarks/startup.py``). Nothing of a local Ray outlives
    the command, so its processes are killed instead, after every other exit hook has run (MLflow
    ends an active run, logging flushes, temporary folders go); joined to a cluster, Ray's hook runs
    with the others. Then the process ends without the interpreter's teardown, which only frees
    memory by then: 0.7 s once torch is imported, 2.5 s after ``ovatune export`` has traced a model
    (torch's compiler stack).

    Without a local Ray, the exit first waits for the other threads and drains the thread pools
    (``threading._shutdown``: what Python's exit does before its exit hooks), so that, for example,
    the metric writes a sweep on a cluster still had queued are made; a Ctrl-C there gives up the
    wait, not the exit. With a local Ray there is no such wait, as before this exit was written.
    """
    import atexit

    local = _connection is not None and _connection.address is None  # a local Ray this process started
    if local:
        import ray

        atexit.unregister(ray.shutdown)
    else:
        _drain_threads()
    atexit._run_exitfuncs()  # CPython's exit hooks (less Ray's, for a local Ray)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`ovatune status | head -1`) or stream: nothing to say
            pass
    if local:
        kill_descendants()
    os._exit(code)


def _drain_threads() -> None:
    """What Python's exit does first (CPython's private ``threading._shutdown``): the thread pools'
    exit hooks, then every non-daemon thread joined. Only from the main thread (elsewhere it would
    wait for the main thread itself); where a Python lacks it, nothing."""
    drain = getattr(threading, "_shutdown", None)
    if drain is None or threading.current_thread() is not threading.main_thread():
        return
    try:
        drain()
    except BaseException:  # noqa: BLE001 - a Ctrl-C while waiting: the exit goes on, as Python's does
        pass


def kill_descendants() -> None:
    """SIGKILL every process this one started, and theirs: a local Ray's GCS, raylet, agents and workers.

    They are frozen (SIGSTOP) until no new one appears, then killed together: a raylet killed first
    would leave its agents to a minute of retrying a GCS that is gone.
    """
    import psutil

    frozen: dict[int, psutil.Process] = {}
    while True:
        found = [p for p in psutil.Process().children(recursive=True) if p.pid not in frozen]
        if not found:
            break
        for process in found:
            try:
                process.suspend()
            except psutil.Error:  # ended already
                pass
            frozen[process.pid] = process
    for process in frozen.values():
        try:
            process.kill()
        except psutil.Error:
            pass
