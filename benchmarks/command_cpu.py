"""Where one ``ovatune`` command's CPU goes, process by process: the driver, Ray's own processes,
and the workers that run trials and tasks.

The test suite keeps both cores busy (88-94% of them, `/proc/stat`), so its time is the CPU its
commands spend: this says which process spends it. The command runs on a fresh home; every process
of its tree (Ray's processes are its descendants when it starts a local Ray) is sampled with psutil
every 0.1 s, and each is named by the titles it had (``ray::IDLE -> ray::ImplicitFunc.train`` is a
worker that trained a trial; ``ray::IDLE`` alone, one Ray started and never used). A process that
lives less than a sample is missed, and the CPU of each is the last sample's, so the total is a
slight underestimate.

    python benchmarks/command_cpu.py                          # a one-epoch, one-trial digits sweep
    python benchmarks/command_cpu.py run digits --smoke-test  # any command (its arguments, without --home)
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

BIN = Path(sys.executable).parent
DEFAULT = ["sweep", "digits", "--losses", "softmax", "--trials", "1", "--epochs", "1"]


def title(process: psutil.Process) -> str:
    """A short name for what ``process`` is now: Ray's process title (``ray::...``), or the script it runs."""
    words = process.cmdline()
    if not words:
        return process.name()
    if words[0].startswith("ray::"):
        return words[0]
    script = next((w for w in words[1:] if not w.startswith("-")), words[0])
    return Path(script).name


def sample(command: list[str], every_s: float = 0.1) -> tuple[float, dict[int, tuple[float, list[str]]]]:
    """Run ``command``; (its wall seconds, pid -> (CPU seconds, the titles it had, in order)) of every
    process of its tree."""
    seen: dict[int, tuple[float, list[str]]] = {}
    started = time.time()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            break
        for member in tree:
            try:
                times = member.cpu_times()
                name = title(member)
            except psutil.Error:
                continue
            titles = seen.get(member.pid, (0.0, []))[1]
            if name not in titles:
                titles.append(name)
            seen[member.pid] = (times.user + times.system, titles)
        time.sleep(every_s)
    return time.time() - started, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the ovatune command (default: %(default)s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        command = [str(BIN / "ovatune"), *(args.args or DEFAULT), "--home", home]
        wall, seen = sample(command)
    groups: dict[str, list[float]] = collections.defaultdict(list)
    for cpu, titles in seen.values():
        groups[" -> ".join(titles)].append(cpu)
    print(f"command: python benchmarks/command_cpu.py {' '.join(args.args)}".rstrip())
    print(f"ovatune {' '.join(args.args or DEFAULT)}: {wall:.1f} s wall, "
          f"{sum(c for c, _ in seen.values()):.1f} CPU s in {len(seen)} processes")  # fmt: skip
    for name, cpus in sorted(groups.items(), key=lambda item: -sum(item[1])):
        print(f"  {sum(cpus):6.2f} CPU s  {len(cpus):2d} x {name}")


if __name__ == "__main__":
    main()
