"""The demo sweep with one trial per worker against packs of K, measured in one run.

Runs ``ovatune sweep EXPERIMENT --pack 1`` and ``ovatune sweep EXPERIMENT --pack K`` (K: the space's
default pack on the CPU, ``SearchSpace.pack_on_cpu``, unless ``--pack`` says) one after the other,
each in a fresh home, alternating ``--repeats`` times, and prints each command's wall time, the
trials' phase (Ray up to trials done, from ``OVATUNE_TIMELINE``) and the ratios. Everything else
is the command as a user runs it: a local Ray, Optuna, MLflow on SQLite, promotion.

    PYTHONPATH=. python benchmarks/pack_sweep.py [--experiment digits] [--repeats 1] [--pack K]
        [--extra "--epochs 10"]    # --extra "--scheduler asha": ASHA stopping members of packs
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from search_spaces import get_space


def run(experiment: str, pack: list[str], extra: list[str], folder: Path) -> tuple[float, float, str]:
    """(the command's wall seconds, its trials' seconds, its summary line)."""
    home, timeline = folder / "home", folder / "timeline.txt"
    shutil.rmtree(home, ignore_errors=True)
    timeline.unlink(missing_ok=True)
    command = [str(Path(sys.executable).parent / "ovatune"), "sweep", experiment, *pack, *extra, "--home", str(home)]
    started = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "OVATUNE_TIMELINE": str(timeline)}
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed:\n{done.stderr[-3000:]}")
    marks = dict(reversed(line.split(" ", 1)) for line in timeline.read_text().splitlines())
    trials = float(marks["trials done"]) - float(marks["tuner built"])
    summary = next(line for line in done.stdout.splitlines() if line.startswith(("sweep ", "\nsweep ")))
    return wall, trials, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="digits")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--pack", type=int, help="K (default: the space's pack_on_cpu)")
    parser.add_argument("--extra", default="", help="more options for both commands, e.g. '--epochs 10'")
    args = parser.parse_args()
    pack = args.pack or get_space(args.experiment).pack_on_cpu
    cases = {"--pack 1": ["--pack", "1"], f"--pack {pack}": ["--pack", str(pack)]}
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(args.repeats):
            for name, options in cases.items():
                wall, trials, summary = run(args.experiment, options, shlex.split(args.extra), Path(scratch))
                figures[name].append((wall, trials))
                print(f"{name:22} command {wall:6.1f} s, trials {trials:6.1f} s   ({summary.strip()})", flush=True)
    (one_wall, one_trials), (pack_wall, pack_trials) = (
        (statistics.median(w for w, _ in runs), statistics.median(t for _, t in runs)) for runs in figures.values()
    )
    print(f"\n{args.experiment} {args.extra}, median of {args.repeats}: the command {one_wall / pack_wall:.2f}x faster "
          f"with --pack {pack}, its trials {one_trials / pack_trials:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
