"""``tuning.cluster``: the environment ovatune gives Ray's worker processes (jemalloc that keeps
freed memory), and how a command's process ends. Where trials may run (the cluster's shape, a trial's resources) is test_resources.

Why it matters: see ``tuning.cluster.worker_environment`` (a CPU ResNet-20 trial trained 1.5x faster
with it).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tuning.cluster import worker_environment

# Runs in a fresh process: a local Ray started by ovatune, then one task in one of its workers. The
# task reports whether jemalloc is loaded there, and the minor page faults of touching a freshly
# allocated 64 MiB buffer once, then ten more times after freeing it each time. An allocator that
# hands freed memory back to the kernel faults all its pages in again every time (~11x the first);
# one that keeps it faults them only once.
WORKER_PROBE = """
import json, os, resource, signal, sys, time, psutil, ray
from tuning.cluster import init_ray

@ray.remote
def probe():
    import torch

    def faults(rounds):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(rounds):
            buffer = torch.empty(16 * 2**20, dtype=torch.float32)  # 64 MiB
            buffer.fill_(1.0)
            del buffer
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    first = faults(1)
    again = faults(10)
    maps = open("/proc/self/maps").read()
    return {"jemalloc": "libjemalloc" in maps, "malloc_conf": os.environ.get("MALLOC_CONF"),
            "first": first, "again": again, "ctrl_c": str(signal.getsignal(signal.SIGINT)),
            "ignored": int(next(l for l in open("/proc/self/status") if l.startswith("SigIgn:")).split()[1], 16)}

@ray.remote(max_retries=0)
def sigterm_inside_a_finalizer():
    # What a raylet shutting down does to a worker whose main thread is in a weakref's callback:
    # SIGTERM, and Ray's handler raises SystemExit there.
    import weakref

    class Thing:
        pass

    thing = Thing()
    keep = weakref.ref(thing, lambda _: signal.raise_signal(signal.SIGTERM))
    del thing
    time.sleep(10)  # where the worker would be, in its next task or waiting for one
    return "the worker lived on"

init_ray(None)
time.sleep(4)  # a local Ray prestarted its idle workers within about 1 s of the driver's start
commands = [(p.name(), " ".join(p.cmdline())) for p in psutil.Process().children(recursive=True)]
workers = [c for name, c in commands if name != "raylet" and (c.startswith("ray::IDLE") or "default_worker.py" in c)]
result = ray.get(probe.remote())
result["workers_before_any_task"] = len(workers)
try:
    result["after_sigterm"] = ray.get(sigterm_inside_a_finalizer.remote())
except ray.exceptions.RayError as error:
    result["after_sigterm"] = type(error).__name__
# one write, newline included: print() writes its pieces and its newline apart, and a raylet line
# from Ray's log thread came between them
sys.stdout.write("PROBE " + json.dumps(result) + "\\n")
sys.stdout.flush()
"""


def run_probe(env: dict[str, str] | None = None) -> dict:
    environment = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    done = subprocess.run(
        [sys.executable, "-c", WORKER_PROBE],
        capture_output=True,
        text=True,
        timeout=180,
        env={**environment, **(env or {})},
    )
    assert done.returncode == 0 and "PROBE " in done.stdout, (done.returncode, done.stdout[-3000:], done.stderr[-3000:])
    (printed,) = [line.removeprefix("PROBE ") for line in done.stdout.splitlines() if line.startswith("PROBE {")]
    return json.loads(printed) | {"stderr": done.stderr}


@pytest.fixture(scope="module")
def default_probe() -> dict:
    return run_probe()


@pytest.mark.skipif(sys.platform != "linux", reason="LD_PRELOAD and /proc are Linux's")
def test_ray_workers_run_with_jemalloc_that_keeps_freed_memory(default_probe):
    probe = default_probe
    assert probe["jemalloc"] and probe["malloc_conf"] == "dirty_decay_ms:-1,muzzy_decay_ms:-1"
    # 64 MiB = 16 384 pages of 4 KiB: the first touch faults them in; ten more rounds reuse them.
    assert probe["first"] >= 8_000, probe
    assert probe["again"] < probe["first"], probe


@pytest.mark.skipif(sys.platform != "linux", reason="LD_PRELOAD and /proc are Linux's")
def test_the_users_own_allocator_setting_wins():
    # With MALLOC_CONF of their own (here jemalloc's defaults, spelled out) ovatune adds nothing:
    # the workers run the system malloc, which faults the buffer in again on every round.
    probe = run_probe({"MALLOC_CONF": "dirty_decay_ms:10000"})
    assert not probe["jemalloc"] and probe["malloc_conf"] == "dirty_decay_ms:10000"
    assert probe["again"] > 5 * probe["first"], probe


@pytest.mark.skipif(sys.platform != "linux", reason="/proc is Linux's")
def test_a_terminal_ctrl_c_reaches_the_driver_not_a_local_rays_workers(default_probe):
    # The driver stops a sweep cleanly on Ctrl-C; a worker's own KeyboardInterrupt raced with that
    # and printed tracebacks (tuning.cluster.settle_local_worker_signals). The kernel's view: SIGINT (2)
    # is in the worker process's ignored set.
    assert default_probe["ctrl_c"] == str(signal.SIG_IGN), default_probe
    assert default_probe["ignored"] & (1 << (signal.SIGINT - 1)), default_probe


def test_a_local_ray_starts_no_worker_before_a_task_needs_one(default_probe):
    # Ray prestarted one idle worker per CPU for the first driver; ovatune's tasks and trials, with
    # their runtime environment, never ran in them (tuning.cluster.init_ray)
    assert default_probe["workers_before_any_task"] == 0, default_probe


def test_a_sigterm_landing_in_a_finalizer_ends_a_local_rays_worker_without_a_traceback(default_probe):
    # Seen in CI: the driver's SIGTERM shut its local Ray down, a worker's SystemExit (Ray's SIGTERM
    # handler) landed in a weakref callback, and the worker printed "Exception ignored in ...
    # Traceback ... SystemExit" to the user's terminal and went on running.
    assert default_probe["after_sigterm"] == "WorkerCrashedError", default_probe["stderr"][-3000:]
    assert "Traceback" not in default_probe["stderr"], default_probe["stderr"][-3000:]


def test_worker_environment_names_rays_own_jemalloc(monkeypatch):
    import ray

    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv("MALLOC_CONF", raising=False)
    env = worker_environment(None)
    if sys.platform == "linux":
        assert Path(env["LD_PRELOAD"]) == Path(ray.__file__).parent / "core" / "libjemalloc.so"
        assert Path(env["LD_PRELOAD"]).is_file()
        assert worker_environment("auto") == env  # a cluster this machine belongs to: same install
    # A Ray Client's workers are on other machines, whose paths this one cannot know.
    assert worker_environment("ray://192.0.2.1:10001") == {}
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libtcmalloc.so")
    assert worker_environment(None) == {}


# A command's end, as ``tuning.cli.console_main`` ends every command (no Ray started here).
ENDING = """
import atexit, sys, time
from concurrent.futures import ThreadPoolExecutor
from tuning.cluster import exit_process

class Teardown:
    def __del__(self):
        print("torn down", flush=True)

kept = Teardown()  # a module's global: deleted only by the interpreter's teardown
atexit.register(lambda: print("exit hook ran"))
sys.stdout.write("printed without a newline; ")
writer = ThreadPoolExecutor(1)  # never shut down, as a sweep's metric writer when Ctrl-C cut it short
writer.submit(lambda: (time.sleep(0.5), print("queued write made;", end=" ")))
exit_process(3)
"""


def test_a_command_ends_after_its_threads_and_exit_hooks_without_the_interpreters_teardown():
    """As Python's exit, less the teardown (which only frees memory by then, and took 2.5 s after
    ``ovatune export``: torch's compiler stack): queued work is done, the exit hooks run, what was
    printed is flushed."""
    ended = subprocess.run([sys.executable, "-c", ENDING], capture_output=True, text=True, timeout=60)
    assert ended.returncode == 3, ended.stderr
    assert ended.stdout == "printed without a newline; queued write made; exit hook ran\n"  # and nothing torn down


def test_a_ctrl_c_while_the_exit_waits_for_a_thread_ends_the_wait_not_the_exit():
    script = (
        # Python's own Ctrl-C, as in a terminal: a shell's background job (CI's) starts with SIGINT ignored
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import sys, time; from concurrent.futures import ThreadPoolExecutor; from tuning.cluster import exit_process\n"
        "ThreadPoolExecutor(1).submit(time.sleep, 600)\n"
        "print('waiting', flush=True); exit_process(3)\n"
    )
    ending = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert ending.stdout.readline() == "waiting\n"
    time.sleep(1)  # in the wait
    ending.send_signal(signal.SIGINT)
    _, stderr = ending.communicate(timeout=60)
    assert ending.returncode == 3 and "Traceback" not in stderr, stderr


# One process, commands one after the other (tuning.cli.main called again, as the tests' in-process
# commands do): which head node each init_ray leaves this process connected to.
REUSE = """
import json, os, sys, ray
from tuning.cluster import init_ray

def node():
    return ray.get_runtime_context().get_node_id()

nodes = {}
init_ray(None); nodes["first"] = node()
init_ray(None); nodes["again"] = node()
init_ray(None, dashboard=True); nodes["with the dashboard"] = node()
init_ray(None); nodes["then without"] = node()
os.environ["OVATUNE_DATA_DIR"] = "/elsewhere"  # what a local Ray's workers inherit when it starts
init_ray(None); nodes["another data folder"] = node()
os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = "1"  # what they are given (tuning.cluster.train_environment)
init_ray(None); nodes["another poll interval"] = node()
ray.shutdown()
ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR"); nodes["their own"] = node()
init_ray(None, dashboard=True); nodes["after theirs"] = node()
sys.stdout.write("NODES " + json.dumps(nodes | {"cpus": ray.cluster_resources()["CPU"]}) + "\\n")  # one write (see PROBE)
"""


@pytest.mark.slow
def test_a_later_command_reuses_the_local_ray_only_when_it_was_started_as_it_needs():
    """A local Ray started without the dashboard (which Ray Train's multi-worker trials need) is
    started again for a command that needs it; one with it serves a command that does not; one whose
    workers would inherit or be given other settings is started again; a Ray the process's own code
    started is used as it is."""
    environment = {
        k: v for k, v in os.environ.items() if k not in ("OVATUNE_DATA_DIR", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S")
    }
    done = subprocess.run([sys.executable, "-c", REUSE], capture_output=True, text=True, timeout=300, env=environment)
    assert done.returncode == 0 and "NODES " in done.stdout, (done.returncode, done.stdout[-3000:], done.stderr[-3000:])
    (nodes,) = [
        json.loads(line.removeprefix("NODES ")) for line in done.stdout.splitlines() if line.startswith("NODES {")
    ]
    assert nodes["again"] == nodes["first"], nodes
    assert nodes["with the dashboard"] != nodes["first"], nodes
    assert nodes["then without"] == nodes["with the dashboard"], nodes
    assert nodes["another data folder"] != nodes["then without"], nodes
    assert nodes["another poll interval"] != nodes["another data folder"], nodes
    assert nodes["after theirs"] == nodes["their own"] and nodes["cpus"] == 1, nodes
