"""Paper scale: the cifar10 sweep at 24, 100 and 400 trials through one driver, one row per size.

The cifar10 space at its trial budget (4 losses x 100 trials at the largest size), with its real
sampler, scheduler and promotion, on synthetic data written in the real on-disk formats at full size
(CIFAR-10's 50 000 training and 10 000 test images, CIFAR-100's and SVHN's test splits, CIFAR-10-C's
19 corruptions x 5 intensities; CIFAR cannot be downloaded here), with a tiny ResNet of the same code
(``--set width=2 --set depth=8 --set batch_size=32 --set steps_per_epoch=4 --set val_examples=500``:
about one second of compute per 5-epoch trial on one core). Ray is a local cluster of a head without CPUs and two worker
raylets of one CPU each, so two trials run at once. Each size is a fresh home; the MLflow store is
the home's SQLite file, or with ``--store postgres`` an ``mlflow server`` on a fresh PostgreSQL
database. Sizes are multiples of the 4 losses (24 = 6 per loss, the nearest to 25).

Per size it runs ``ovatune sweep cifar10`` (the sweep and its promotion: the driver measured), then,
for the sizes in ``--evaluate-sizes`` (default: the largest; the evaluation measures 4 champions on
about a million images whatever the sweep's size: 3.5 minutes here), ``ovatune evaluate cifar10``.
Each row:

- wall: the sweep command's launch to ``trials done`` on ``OVATUNE_TIMELINE`` (Tune's fit returned
  after the last trial, and finished trials' older checkpoints were deleted);
- ideal: the trials' own compute (each trial's ``time_total_s`` in Ray Tune's results, the time
  inside its trainable) summed, over the 2 slots; and wall / ideal;
- overhead per trial: (wall x slots - the trials' compute) / trials: slot-seconds a trial costs
  beyond its own compute (start-up shared out, scheduling, actor and result handling, MLflow logging,
  checkpoint hand-off); and the same from the tuner built (``tuner built``) on: start-up left out;
- the sweep driver's CPU seconds and peak RSS (``wait4``), the store's size;
- the UI: the run-list request (``runs/search`` for 100 runs, newest first: the larger of the two
  the experiment page sends, as ``tests/test_ui.py`` records them in a real browser) and
  opening one trial run (``runs/get``, its artifact list and each metric's history as the run page's
  charts ask), each the median of 5, against ``ovatune ui`` (SQLite) or the server (PostgreSQL);
- checkpoint bytes kept per trial (the sweep's Ray Tune folder over its trials);
- promotion (``trials done`` to ``promoted``); evaluation (``ovatune evaluate``'s models measured)
  and its report (figures, importance, ``report.md``).

Goals at 400 trials (issue 33): overhead per trial <= 1 s and <= 1.2x the smallest size's; driver
peak RSS < 2 GB; run-list request < 1 s. ``--profile`` runs the largest sweep's driver under cProfile
and prints where its time went.

    python benchmarks/scale.py                        # 24, 100, 400 trials: about 11 minutes on 2 cores
    python benchmarks/scale.py --sizes 8 --evaluate-sizes 8      # a quick look, about 3 minutes
    python benchmarks/scale.py --store postgres       # the MLflow server on PostgreSQL
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent
PG_SOCKET = "/var/run/postgresql"
SLOTS = 2  # two worker raylets of one CPU each, one CPU per trial
DATA_VERSION = "1"  # bump when the synthetic data change
TRIAL_SETTINGS = {"width": 2, "depth": 8, "batch_size": 32, "steps_per_epoch": 4, "val_examples": 500}
UI_REPEATS = 5


# ---------------------------------------------------------------------------------------- the data


def write_data(root: Path) -> Path:
    """Synthetic CIFAR-10 at full size in its real formats under ``root`` (written once, then reused:
    a ``complete`` marker is written last). Class-dependent colours plus noise, so a tiny network
    learns something; the shifted sets add noise that grows with the intensity."""
    from scipy.io import savemat

    from trainables.data.cifar import write_cifar
    from trainables.data.corrupted_sets import CORRUPTED_SETS

    done = root / f"complete-v{DATA_VERSION}"
    if done.exists():
        return root
    started = time.time()
    print(f"writing full-size synthetic CIFAR-10, CIFAR-100 test, SVHN test and CIFAR-10-C into {root} ...", flush=True)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    def images(labels: np.ndarray) -> np.ndarray:  # (N, 32, 32, 3) uint8
        return (
            rng.integers(0, 60, (len(labels), 32, 32, 3), dtype=np.uint8)
            + (labels * 19).astype(np.uint8)[:, None, None, None]
        )

    train_labels = rng.permutation(np.arange(50_000) % 10)
    write_cifar("cifar10", root, images(train_labels), train_labels, train=True)
    test_labels = rng.permutation(np.arange(10_000) % 10)
    test_images = images(test_labels)
    write_cifar("cifar10", root, test_images, test_labels, train=False)
    with open(root / "cifar-10-batches-py" / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    write_cifar("cifar100", root, rng.integers(0, 256, (10_000, 32, 32, 3), dtype=np.uint8),
                np.arange(10_000) % 100, train=False)  # fmt: skip
    (root / "svhn").mkdir(exist_ok=True)
    savemat(root / "svhn" / "test_32x32.mat",
            {"X": rng.integers(0, 256, (32, 32, 3, 26_032), dtype=np.uint8), "y": (np.arange(26_032) % 10 + 1)[:, None]})  # fmt: skip
    shifted = root / CORRUPTED_SETS["cifar10"].folder
    shifted.mkdir(exist_ok=True)
    np.save(shifted / "labels.npy", np.tile(test_labels, 5).astype(np.uint8))
    for corruption in CORRUPTED_SETS["cifar10"].corruptions:
        out = np.lib.format.open_memmap(
            shifted / f"{corruption}.npy", mode="w+", dtype=np.uint8, shape=(50_000, 32, 32, 3)
        )
        for intensity in range(1, 6):
            noise = rng.integers(-12 * intensity, 12 * intensity + 1, test_images.shape, dtype=np.int16)
            out[(intensity - 1) * 10_000 : intensity * 10_000] = np.clip(test_images + noise, 0, 255)
        out.flush()
        del out
    done.write_text("")
    print(f"  written in {time.time() - started:.0f} s", flush=True)
    return root


# ------------------------------------------------------------------------------- the store and UI


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, what: str) -> None:
    for _ in range(240):
        if process.poll() is not None:
            raise SystemExit(f"{what} ended with exit code {process.returncode}")
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{what} did not answer on {url}")


class PostgresServer:
    """An ``mlflow server`` on a fresh PostgreSQL database, through this machine's Unix socket."""

    def __init__(self, home: Path):
        import psycopg2

        self.database = f"ovatune_scale_{uuid.uuid4().hex[:8]}"
        self.admin = psycopg2.connect(host=PG_SOCKET, user="postgres", dbname="postgres")
        self.admin.autocommit = True
        self.admin.cursor().execute(f'CREATE DATABASE "{self.database}"')
        self.url = f"http://127.0.0.1:{free_port()}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        self.process = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--backend-store-uri",
             f"postgresql+psycopg2://postgres@/{self.database}?host={PG_SOCKET}",
             "--artifacts-destination", (home / "artifacts").as_uri(), "--host", "127.0.0.1",
             "--port", self.url.rsplit(":", 1)[1], "--workers", "2"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            wait_healthy(self.url, self.process, "mlflow server")
        except BaseException:
            self.close()
            raise

    def size(self) -> int:
        cursor = self.admin.cursor()
        cursor.execute("SELECT pg_database_size(%s)", (self.database,))
        return int(cursor.fetchone()[0])

    def close(self) -> None:
        stop_group(self.process)
        cursor = self.admin.cursor()
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (self.database,))
        cursor.execute(f'DROP DATABASE IF EXISTS "{self.database}"')
        self.admin.close()


def stop_group(process: subprocess.Popen) -> None:
    """End a server started in a session of its own, and everything it started (gone already: fine)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, 15)
    process.wait(timeout=60)


def _request(url: str, body: dict | None = None) -> tuple[float, dict]:
    """(seconds, JSON answer) of one GET (or POST with ``body``)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.load(response)
    return time.perf_counter() - started, answer


def ui_latency(url: str, experiment_id: str, trial_run_id: str) -> tuple[float, float, int]:
    """(median seconds of the run-list request, of opening one trial run, runs in the experiment)."""
    api = f"{url}/ajax-api/2.0/mlflow"
    page = {"experiment_ids": [experiment_id], "filter": "", "run_view_type": "ACTIVE_ONLY",
            "max_results": 100, "order_by": ["attributes.start_time DESC"]}  # fmt: skip
    _request(f"{api}/runs/search", page)  # warm the server's caches and connections once
    listing = statistics.median(_request(f"{api}/runs/search", page)[0] for _ in range(UI_REPEATS))

    def open_run() -> float:
        seconds, run = _request(f"{api}/runs/get?run_id={trial_run_id}")
        seconds += _request(f"{api}/artifacts/list?run_uuid={trial_run_id}")[0]
        for metric in run["run"]["data"].get("metrics", []):
            seconds += _request(f"{api}/metrics/get-history-bulk-interval?run_ids={trial_run_id}"
                                f"&metric_key={urllib.request.quote(metric['key'])}&max_results=320")[0]  # fmt: skip
        return seconds

    opening = statistics.median(open_run() for _ in range(UI_REPEATS))
    runs, token = 0, None
    while True:  # every run, for the count
        _, answer = _request(
            f"{api}/runs/search", {**page, "max_results": 1000, **({"page_token": token} if token else {})}
        )
        runs += len(answer.get("runs", []))
        token = answer.get("next_page_token")
        if not token:
            return listing, opening, runs


# ---------------------------------------------------------------------------------------- one size


@dataclass
class Row:
    trials: int
    wall_s: float = 0.0
    compute_s: float = 0.0
    driver_cpu_s: float = 0.0
    driver_rss_mb: float = 0.0
    store_mb: float = 0.0
    list_s: float = 0.0
    open_s: float = 0.0
    runs: int = 0
    checkpoint_kb: float = 0.0
    startup_s: float = 0.0
    promotion_s: float = 0.0
    evaluation_s: float | None = None
    report_s: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ideal_s(self) -> float:
        return self.compute_s / SLOTS

    @property
    def overhead_s(self) -> float:
        return (self.wall_s * SLOTS - self.compute_s) / self.trials

    @property
    def running_overhead_s(self) -> float:
        """The same once the tuner is built: what each further trial costs, start-up left out."""
        return ((self.wall_s - self.startup_s) * SLOTS - self.compute_s) / self.trials


def timeline(path: Path) -> dict[str, float]:
    """Phase -> the time its mark was last written (``tuning/timeline.py``)."""
    marks = {}
    for line in path.read_text().splitlines():
        when, _, phase = line.partition(" ")
        marks[phase] = float(when)
    return marks


# ``ovatune ARGS`` under cProfile, its profile written to PATH (argv[1]) by an exit hook
PROFILED = """
import atexit, cProfile, sys
profile = cProfile.Profile()
atexit.register(profile.dump_stats, sys.argv[1])
sys.argv = ["ovatune", *sys.argv[2:]]
profile.enable()
from tuning.cli import console_main
console_main()
"""


def run_ovatune(args: list[str], env: dict, log: Path, profile: Path | None = None) -> tuple[float, float, float]:
    """Run ``ovatune ARGS`` to its end: (launch time, driver CPU seconds, driver peak RSS in MB)."""
    command = [str(BIN / "ovatune"), *args]
    if profile:  # written by an exit hook: ovatune ends without Python's teardown, where cProfile -o writes
        command = [sys.executable, "-c", PROFILED, str(profile), *args]
    launched = time.time()
    with open(log, "w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"`ovatune {' '.join(args)}` failed with exit code {process.returncode}; its output: {log}")
    return launched, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def trials_compute(storage: Path) -> tuple[float, int, int]:
    """(the trials' own seconds summed, trials, bytes kept) from the sweep's Ray Tune folder."""
    compute, trials, kept = 0.0, 0, 0
    for result in storage.rglob("result.json"):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        if rows:
            compute += max(row.get("time_total_s", 0.0) for row in rows)
            trials += 1
    kept = sum(
        p.stat().st_size for p in storage.rglob("*") if p.is_file() and "checkpoint_" in str(p.relative_to(storage))
    )
    return compute, trials, kept


def measure_size(trials: int, data: Path, address: str, scratch: Path, store: str, epochs: int,
                 evaluate: bool, profile: bool) -> Row:  # fmt: skip
    from mlflow.tracking import MlflowClient

    home = scratch / f"home-{trials}"
    home.mkdir(parents=True)
    server = PostgresServer(home) if store == "postgres" else None
    uri = server.url if server else f"sqlite:///{home / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OVATUNE_"))}
    env["OVATUNE_TIMELINE"] = str(home / "timeline.txt")
    common = ["--home", str(home), "--tracking-uri", uri]
    settings = [arg for key, value in TRIAL_SETTINGS.items() for arg in ("--set", f"{key}={value}")]
    row = Row(trials)
    try:
        launched, row.driver_cpu_s, row.driver_rss_mb = run_ovatune(
            ["sweep", "cifar10", "--trials", str(trials // 4), "--epochs", str(epochs), *settings,
             "--data-dir", str(data), "--address", address, "--cpus-per-trial", "1", "--gpus-per-trial", "0", *common],
            env, home / "sweep.log", home / "driver.prof" if profile else None,
        )  # fmt: skip
        marks = timeline(home / "timeline.txt")
        row.wall_s = marks["trials done"] - launched
        row.startup_s = marks["tuner built"] - launched
        row.promotion_s = marks["promoted"] - marks["trials done"]
        row.compute_s, counted, kept = trials_compute(home / "ray_results")
        if counted != trials:
            row.notes.append(f"{counted} trial folders for {trials} trials")
        row.checkpoint_kb = kept / trials / 1024
        if evaluate:
            (home / "timeline.txt").unlink()
            run_ovatune(["evaluate", "cifar10", "--address", address, *common], env, home / "evaluate.log")
            marks = timeline(home / "timeline.txt")
            row.evaluation_s = marks["models measured"] - marks["champions found"]
            row.report_s = marks["report written"] - marks["models measured"]
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("cifar10")
        (trial,) = client.search_runs([experiment.experiment_id], "tags.`ovatune.kind` = 'trial'", max_results=1)
        if server:
            row.store_mb = server.size() / 2**20
            row.list_s, row.open_s, row.runs = ui_latency(server.url, experiment.experiment_id, trial.info.run_id)
        else:
            row.store_mb = (home / "mlflow.db").stat().st_size / 2**20
            port = free_port()
            ui = subprocess.Popen([str(BIN / "ovatune"), "ui", "--home", str(home), "--port", str(port)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
            try:
                wait_healthy(f"http://127.0.0.1:{port}", ui, "ovatune ui")
                row.list_s, row.open_s, row.runs = ui_latency(f"http://127.0.0.1:{port}", experiment.experiment_id,
                                                              trial.info.run_id)  # fmt: skip
            finally:
                stop_group(ui)
    finally:
        if server:
            server.close()
    return row


# --------------------------------------------------------------------------------------- reporting


def print_table(rows: list[Row], profiled: bool = False) -> None:
    def cell(value: float | None, fmt: str) -> str:
        return "—" if value is None else format(value, fmt)

    print("\n| trials | wall s | ideal s | wall/ideal | overhead s/trial | after start-up | driver CPU s | driver peak RSS MB | "
          "store MB | run list s | open a trial s | runs | checkpoints KB/trial | start-up s | promotion s | "
          "evaluation s | report s |")  # fmt: skip
    print("|" + "---|" * 17)
    for r in rows:
        print(f"| {r.trials} | {r.wall_s:.1f} | {r.ideal_s:.1f} | {r.wall_s / r.ideal_s:.2f} | {r.overhead_s:.2f} | {r.running_overhead_s:.2f} | "
              f"{r.driver_cpu_s:.1f} | {r.driver_rss_mb:.0f} | {r.store_mb:.1f} | {r.list_s:.3f} | {r.open_s:.3f} | "
              f"{r.runs} | {r.checkpoint_kb:.0f} | {r.startup_s:.1f} | {r.promotion_s:.1f} | "
              f"{cell(r.evaluation_s, '.1f')} | {cell(r.report_s, '.1f')} |")  # fmt: skip
    if profiled:
        print(f"note: the {rows[-1].trials}-trial driver ran under cProfile, which slows it")
    for r in rows:
        for note in r.notes:
            print(f"note ({r.trials} trials): {note}")
    largest, smallest = rows[-1], rows[0]
    goals = [
        (f"overhead per trial at {largest.trials} <= 1 s", largest.overhead_s <= 1.0, f"{largest.overhead_s:.2f} s"),
        (f"overhead per trial at {largest.trials} <= 1.2x the {smallest.trials}-trial figure",
         largest.overhead_s <= 1.2 * smallest.overhead_s, f"{largest.overhead_s / smallest.overhead_s:.2f}x"),
        ("driver peak RSS < 2 GB", largest.driver_rss_mb < 2048, f"{largest.driver_rss_mb:.0f} MB"),
        ("run-list request < 1 s", largest.list_s < 1.0, f"{largest.list_s:.3f} s"),
    ]  # fmt: skip
    print()
    for goal, met, value in goals:
        print(f"goal: {goal}: {value}: {'met' if met else 'MISSED'}")


def print_profile(path: Path, lines: int = 25) -> None:
    import pstats

    print(f"\nthe largest sweep's driver under cProfile ({path}), by cumulative time:")
    pstats.Stats(str(path)).sort_stats("cumulative").print_stats(lines)
    pstats.Stats(str(path)).sort_stats("tottime").print_stats(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="24,100,400", help="trials per sweep, multiples of 4 (default 24,100,400)")
    parser.add_argument(
        "--evaluate-sizes", help="the sizes that also run `ovatune evaluate`, or none (default: the largest)"
    )
    parser.add_argument("--epochs", type=int, default=5, help="epochs per trial (default 5)")
    parser.add_argument(
        "--store", choices=["sqlite", "postgres"], default="sqlite", help="the MLflow store (default sqlite)"
    )
    parser.add_argument(
        "--data-dir", type=Path, help="where the synthetic data are written once (default: ovatune's cache)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the homes (stores, logs, checkpoints)")
    parser.add_argument("--profile", action="store_true", help="the largest sweep's driver under cProfile")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if any(s % 4 or s <= 0 for s in sizes):
        parser.error("--sizes: each a positive multiple of 4 (the losses)")
    if args.evaluate_sizes == "none":
        evaluated = set()
    else:
        evaluated = {int(s) for s in args.evaluate_sizes.split(",")} if args.evaluate_sizes else {max(sizes)}
    print("command: python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]))
    print(f"machine: {os.cpu_count()} cores; trials: {' '.join(f'{k}={v}' for k, v in TRIAL_SETTINGS.items())}, "
          f"{args.epochs} epochs, 1 CPU each, {SLOTS} at once; store: {args.store}", flush=True)  # fmt: skip

    from trainables.cache import cache_folder

    data = write_data(args.data_dir or cache_folder() / "scale-cifar10")
    from ray.cluster_utils import Cluster

    scratch = Path(tempfile.mkdtemp(prefix="ovatune-scale-"))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    rows = []
    try:
        for _ in range(SLOTS):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        for size in sizes:
            started = time.time()
            rows.append(measure_size(size, data, cluster.address, scratch, args.store, args.epochs, size in evaluated,
                                     args.profile and size == max(sizes)))  # fmt: skip
            r = rows[-1]
            print(f"{size} trials: wall {r.wall_s:.0f} s, ideal {r.ideal_s:.0f} s, overhead {r.overhead_s:.2f} s/trial, "
                  f"driver {r.driver_cpu_s:.0f} CPU s and {r.driver_rss_mb:.0f} MB; measured in {time.time() - started:.0f} s",
                  flush=True)  # fmt: skip
    finally:
        cluster.shutdown()  # its own processes, by their PIDs
        if rows:  # what was measured before a failure is still shown
            print_table(rows, profiled=args.profile)
    if args.profile:
        print_profile(scratch / f"home-{max(sizes)}" / "driver.prof")
    if args.keep:
        print(f"\nhomes kept in {scratch}")
    else:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
