"""Where a one-trial command's time goes, against a bare ``ray.init()`` in a fresh process.

Runs, in one sitting and in this order:

1. a bare Ray start: a fresh ``python`` that imports ray, calls ``ray.init()`` and exits (its time
   from launch to ``ray.init()`` returning, and to the process's end);
2. ``ovatune --help`` and ``ovatune sweep --help``: wall time, peak resident memory, and whether
   torch or Ray were imported;
3. ``ovatune sweep digits --losses softmax --trials 1 --epochs 1`` on a fresh home with
   ``OVATUNE_TIMELINE`` set (``tuning/timeline.py``): every phase from launch to the process's end,
   with the trial's own start, first result and end read from its MLflow run; then ``ovatune
   evaluate digits`` on that home, phase by phase (``ovatune run`` is the two in one process);
   then ``ovatune ui`` on that home: time to answering ``/health``, memory of its own process and
   of the whole server;
4. the bare Ray start again (the baseline is the mean of both: this machine drifts between runs);
5. the floor under any Ray Tune service: a fresh process that starts Ray and runs one do-nothing
   Tune trial, from launch to the trial's first line.

It prints each phase's seconds and the issue's two ratios: launch to first trial over the bare
``ray.init()``, and the command's time outside its trial over the same.

    python benchmarks/startup.py            # about 1 minute on 2 cores
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
BARE_RAY = """
import sys, time
launched = float(sys.argv[1])
import ray
ray.init(address="local", include_dashboard=False)
print(time.time() - launched, flush=True)
"""
# The floor under any Ray Tune service: a fresh process that starts Ray and runs one trial that
# does nothing, timed from launch to the trial function's first line (the time it prints).
BARE_TUNE = """
import sys, tempfile, time
launched = float(sys.argv[1])
import ray
from ray import tune
ray.init(address="local", include_dashboard=False)

def trial(config):
    tune.report({"called": time.time()})

with tempfile.TemporaryDirectory() as results:
    grid = tune.Tuner(trial, run_config=tune.RunConfig(storage_path=results, verbose=0)).fit()
print(grid[0].metrics["called"] - launched, flush=True)
"""
WHAT_HELP_IMPORTS = """
import sys
sys.argv = ["ovatune", *sys.argv[1:]]
from tuning.cli import main
try:
    main()
except SystemExit:
    pass
print("\\nimported:", ",".join(m for m in ("torch", "ray", "mlflow", "optuna") if m in sys.modules))
"""


def peak_of(command: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak resident MB, stdout) of ``command``, measured by a fresh wrapper process
    so that the peak is this command's own."""
    wrapper = (
        "import resource, subprocess, sys, time; started = time.time(); "
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "wall = time.time() - started; "
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024; "
        "print(done.stdout); print(f'@@ {wall} {peak} {done.returncode}')"
    )
    output = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True, text=True).stdout
    *lines, last = output.rstrip("\n").splitlines()
    _, wall, peak, code = last.split()
    if code != "0":
        raise SystemExit(f"{' '.join(command)} exited {code}")
    return float(wall), float(peak), "\n".join(lines)


def bare_ray_start() -> tuple[float, float]:
    """(launch to ``ray.init()`` returned, launch to the process's end) of a fresh process, seconds."""
    launched = time.time()
    done = subprocess.run([sys.executable, "-c", BARE_RAY, str(launched)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the bare ray.init() failed:\n{done.stderr[-3000:]}")
    return float(done.stdout.strip().splitlines()[-1]), time.time() - launched


def bare_tune_trial() -> float:
    """Launch to a do-nothing Tune trial's first line in a fresh process (Ray's start, Tune's
    set-up, the trial's worker process), seconds."""
    launched = time.time()
    done = subprocess.run([sys.executable, "-c", BARE_TUNE, str(launched)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the bare Tune trial failed:\n{done.stderr[-3000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def read_timeline(path: Path, launched: float) -> list[tuple[str, float]]:
    """The timeline's (phase, seconds since launch) pairs, in order."""
    marks = []
    for line in path.read_text().splitlines():
        stamp, phase = line.split(" ", 1)
        marks.append((phase, float(stamp) - launched))
    return marks


def trial_times(home: Path, launched: float) -> dict[str, float]:
    """The one trial's run opened, first result and end, in seconds since launch, from MLflow."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name("digits").experiment_id
    (trial,) = client.search_runs([experiment_id], filter_string="tags.`ovatune.kind` = 'trial'")
    history = client.get_metric_history(trial.info.run_id, "time_this_iter_s")
    first = min(history, key=lambda m: m.timestamp)
    return {
        "trial run opened": trial.info.start_time / 1000 - launched,
        "first result (epoch 1 reported)": first.timestamp / 1000 - launched,
        "first epoch time": first.value,
        "trial run closed": trial.info.end_time / 1000 - launched,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args()
    ovatune = str(BIN / "ovatune")

    bare_before = bare_ray_start()
    helps = {}
    for args in (["--help"], ["sweep", "--help"]):
        wall, peak, _ = peak_of([ovatune, *args])
        imported = subprocess.run([sys.executable, "-c", WHAT_HELP_IMPORTS, *args], capture_output=True, text=True)
        helps[" ".join(args)] = (wall, peak, imported.stdout.strip().splitlines()[-1].removeprefix("imported:").strip())

    home = Path(tempfile.mkdtemp(prefix="ovatune-startup-"))
    sweep = ["sweep", "digits", "--losses", "softmax", "--trials", "1", "--epochs", "1"]
    sweep_marks, sweep_s, launched = run_with_timeline([ovatune, *sweep], home, "sweep")
    trial = trial_times(home, launched)
    evaluate = ["evaluate", "digits"]
    evaluate_marks, evaluate_s, _ = run_with_timeline([ovatune, *evaluate], home, "evaluate")
    ui = ui_start(ovatune, home)
    bare_after = bare_ray_start()
    tune_floor = bare_tune_trial()

    bare_init = (bare_before[0] + bare_after[0]) / 2
    bare_whole = (bare_before[1] + bare_after[1]) / 2
    print("command: python benchmarks/startup.py")
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    print(f"bare ray.init() in a fresh process: {bare_init:.2f} s to return (runs: {bare_before[0]:.2f}, "
          f"{bare_after[0]:.2f}); {bare_whole:.2f} s to the process's end")  # fmt: skip
    for args, (wall, peak, imported) in helps.items():
        print(
            f"ovatune {args}: {wall:.2f} s, peak {peak:.0f} MB resident; imports {imported or 'none of torch, ray, mlflow, optuna'}"
        )
    print(f"ovatune ui: {ui[0]:.2f} s from launch to answering /health; its own process {ui[1]:.0f} MB resident, "
          f"the whole server {ui[2]:.0f} MB")  # fmt: skip
    trial_rows = [(k, v) for k, v in trial.items() if k != "first epoch time"]
    print_phases(["ovatune", *sweep], [*sweep_marks, *trial_rows], sweep_s)
    print_phases(["ovatune", *evaluate], evaluate_marks, evaluate_s)
    first_trial = trial["trial run opened"]
    in_trial = trial["trial run closed"] - trial["trial run opened"]
    print(f"\nlaunch to first trial (its run opened): {first_trial:.2f} s = {first_trial / bare_init:.2f}x the bare "
          "ray.init() (goal <= 2x)")  # fmt: skip
    print(f"the floor, a bare ray.init() and one do-nothing Tune trial in a fresh process: {tune_floor:.2f} s = "
          f"{tune_floor / bare_init:.2f}x the bare ray.init(); ovatune's first trial run opens "
          f"{first_trial - tune_floor:.2f} s after the floor's trial function starts")  # fmt: skip
    print(f"launch to first result: {trial['first result (epoch 1 reported)']:.2f} s, of which the epoch itself "
          f"{trial['first epoch time']:.2f} s")  # fmt: skip
    print(f"one-trial sweep: {sweep_s:.2f} s; outside its trial: {sweep_s - in_trial:.2f} s = "
          f"{(sweep_s - in_trial) / bare_init:.2f}x the bare ray.init() (goal <= 3x)")  # fmt: skip


def ui_start(ovatune: str, home: Path) -> tuple[float, float, float]:
    """(seconds from launch to answering /health, MB resident of ovatune's own process, MB of its
    whole process group) of ``ovatune ui`` on ``home``; stopped with SIGTERM afterwards."""
    import signal
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launched = time.time()
    ui = subprocess.Popen([ovatune, "ui", "--port", str(port), "--home", str(home)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if ui.poll() is not None or time.time() - launched > 120:
                    raise SystemExit("ovatune ui did not answer /health") from None
                time.sleep(0.2)
        ready = time.time() - launched
        return ready, _rss_mb(str(ui.pid)), sum(_rss_mb(pid) for pid in _tree(ui.pid))
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=60)


def _tree(root: int) -> list[str]:
    """``root`` and every process descended from it, as /proc entries."""
    parents = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            parents[pid] = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
        except (OSError, IndexError):
            pass
    tree, frontier = [str(root)], [str(root)]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def _rss_mb(pid: str) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0.0)


def run_with_timeline(command: list[str], home: Path, name: str) -> tuple[list[tuple[str, float]], float, float]:
    """Run ``command --home HOME`` with ``OVATUNE_TIMELINE`` set: (its marks, its wall seconds, launch time)."""
    timeline = home / f"timeline-{name}.txt"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"OVATUNE_TIMELINE": str(timeline)}
    launched = time.time()
    subprocess.run([*command, "--home", str(home)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=env)  # fmt: skip
    return read_timeline(timeline, launched), time.time() - launched, launched


def print_phases(command: list[str], marks: list[tuple[str, float]], ended: float) -> None:
    """One line per phase: seconds since launch, and the phase's own seconds."""
    print(f"\n`{' '.join(command)}`, phases (seconds since launch, and each phase's own):")
    previous = 0.0
    for phase, at in sorted([*marks, ("process ended", ended)], key=lambda row: row[1]):
        print(f"  {phase:<34} {at:7.2f}  (+{at - previous:5.2f})")
        previous = at


if __name__ == "__main__":
    main()
