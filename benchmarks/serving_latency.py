"""Serving latency of a champion behind ``mlflow models serve`` (the current environment, no conda).

Trains the digits champions with a 1-trial-per-loss sweep in a temporary home (or uses ``--home``),
starts ``mlflow models serve`` on 127.0.0.1, and times HTTP POSTs to /invocations from this process:
one example per request, and batches of 256, each the median of many requests after a warm-up. It
also times the same batch through the torch.export, TorchScript and ONNX exports in-process.

    python benchmarks/serving_latency.py [--loss ova_dm] [--home DIR] [--requests 200]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent


def post(url: str, rows: np.ndarray) -> float:
    body = json.dumps({"inputs": rows.tolist()}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        json.load(response)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loss", default="ova_dm")
    parser.add_argument("--home", type=Path, help="an ovatune home with digits champions (default: train some)")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    print("command: python " + " ".join(sys.argv))
    scratch = tempfile.TemporaryDirectory()
    home = args.home or Path(scratch.name) / "home"
    if args.home is None:
        print("training digits champions (1 trial per loss) ...", flush=True)
        subprocess.run([str(BIN / "ovatune"), "sweep", "digits", "--trials", "1", "--epochs", "5", "--home", str(home)],
                       check=True, capture_output=True)  # fmt: skip

    from serving import ExportedModel, raw_inputs
    from trainables.data import load_dataset

    data = load_dataset("digits")
    raw = raw_inputs(data.preprocessing, data.test.x).numpy()
    rows = raw.reshape(len(raw), -1)
    batch = np.resize(rows, (256, rows.shape[1]))

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    environment = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
                   "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/ovatune-digits-{args.loss}@champion",
         "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
        env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/invocations"
    try:
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        for _ in range(10):
            post(url, batch)
        single = [post(url, rows[i % len(rows) : i % len(rows) + 1]) for i in range(args.requests)]
        batched = [post(url, batch) for _ in range(max(20, args.requests // 10))]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    print(f"\nmlflow models serve, ovatune-digits-{args.loss}@champion, loopback HTTP:")
    print(
        f"  1 example per request : median {np.median(single) * 1e3:.2f} ms, p95 {np.percentile(single, 95) * 1e3:.2f} ms"
    )
    print(f"  256 examples          : median {np.median(batched) * 1e3:.2f} ms "
          f"({256 / np.median(batched):,.0f} examples/s)")  # fmt: skip

    with tempfile.TemporaryDirectory() as out:
        for fmt in ("torch_export", "torchscript", "onnx"):
            subprocess.run([str(BIN / "ovatune"), "export", "digits", "--losses", args.loss, "--format", fmt,
                            "--out", out, "--home", str(home)], check=True, capture_output=True)  # fmt: skip
            model = ExportedModel(Path(out) / args.loss / fmt)
            model(batch)
            times = []
            for _ in range(50):
                started = time.perf_counter()
                model(batch)
                times.append(time.perf_counter() - started)
            print(f"  {fmt:<11} in-process, 256 examples: median {np.median(times) * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
