"""``ovatune ui`` (``tuning.ui`` and ``commands.ui``): MLflow's server on loopback over the home's
store, a signal stops its whole process tree, a busy port is one error line. Real servers, real signals."""

import json
import os
import random
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from trainables.losses import LOSSES
from tuning.ui import GUARD

from browser import ARTIFACTS, launch_chromium, needs_chromium
from launch import free_port, run_ovatune, start_ovatune, wait_for

pytestmark = pytest.mark.slow


def store(home: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{home / 'mlflow.db'}")


def _start_ui(home: Path, port: int) -> subprocess.Popen:
    """``ovatune ui --port PORT`` in a session of its own, its output captured."""
    return start_ovatune("ui", "--port", str(port), home=home,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip


def _healthy(port: int) -> bool:
    """Whether an MLflow server answers its health check on ``port``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_ui_serves_the_store_on_loopback(home):
    client = store(home)  # creates the SQLite store
    client.create_experiment("digits")
    port = free_port()
    server = _start_ui(home, port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _healthy(port), 120, "the MLflow server")
        with urllib.request.urlopen(f"{url}/api/2.0/mlflow/experiments/search?max_results=10", timeout=10) as response:
            names = [e["name"] for e in json.load(response)["experiments"]]
        assert "digits" in names
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200 and "<html" in response.read().decode().lower()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _leave_in_time_wait(port: int) -> None:
    """Leave a closed connection on ``port`` whose server side waits out TIME_WAIT (60 s on Linux)."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        with socket.create_connection(("127.0.0.1", port)) as client:
            served, _ = listener.accept()
            served.close()  # the server closes first, as MLflow's does after a response: its side waits
            assert client.recv(1) == b""
    with socket.socket() as plain, pytest.raises(OSError):  # a bind without SO_REUSEADDR is refused now
        plain.bind(("127.0.0.1", port))


def _session(process) -> int | None:
    try:
        return os.getsid(process.pid)
    except OSError:  # gone meanwhile
        return None


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ui_stops_its_whole_server_on_a_signal_and_refuses_a_busy_port(home, signum):
    import psutil

    store(home).create_experiment("digits")
    port = free_port()
    ui = _start_ui(home, port)
    try:
        wait_for(lambda: _healthy(port), 120, "the MLflow server")
        started = psutil.Process(ui.pid).children(recursive=True)
        assert started, "the UI server runs in processes of its own"
        if signum == signal.SIGINT:  # the lightest server that serves the UI: no job-execution consumers
            time.sleep(12)  # MLflow starts those some seconds after the server answers, outside its tree
            (server,) = [p for p in psutil.Process(ui.pid).children() if GUARD not in p.cmdline()]
            session = os.getsid(server.pid)
            tree = [p for p in psutil.process_iter(["cmdline"]) if _session(p) == session]
            assert len(tree) <= 2 and not [p for p in tree if "huey" in " ".join(p.info["cmdline"] or [])], tree
            # and what supervises it is a bare Python, not the CLI with torch, Ray and MLflow (~770 MB)
            assert psutil.Process(ui.pid).memory_info().rss < 100 * 2**20
        ui.send_signal(signum)  # to ovatune's own PID, as `kill` or a terminal's Ctrl-C would
        assert ui.wait(timeout=60) == 0
        output = ui.stdout.read()
        assert "Warning" not in output  # no library's warnings meant for its developers
        # what the user must know (the link), none of MLflow's or uvicorn's start and stop notices
        lines = [line for line in output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("MLflow UI for"), output
        _, alive = psutil.wait_procs(started, timeout=20)
        assert not alive, [p.cmdline() for p in alive]  # no server process outlives ovatune
        if signum == signal.SIGTERM:  # and the port serves again, even while TIME_WAIT holds it
            _leave_in_time_wait(port)  # as a browser's visit leaves it: `ovatune ui` refused it before
            ui = _start_ui(home, port)
            wait_for(lambda: _healthy(port), 120, "the MLflow server started again")
            ui.send_signal(signum)
            assert ui.wait(timeout=60) == 0
    finally:
        if ui.poll() is None:
            os.killpg(ui.pid, signal.SIGKILL)

    with socket.socket() as busy:  # a port already in use: one error line, nothing started
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        refused = run_ovatune("ui", "--port", str(taken), home=home, timeout=60)
    assert refused.returncode == 1
    assert refused.stderr.startswith("ovatune: error:") and f"port {taken}" in refused.stderr
    assert "MLflow UI for" not in refused.stdout


def test_a_killed_ui_leaves_no_server_on_its_port(home):
    """SIGKILL runs no handler: the server used to stay on the port, and the next `ovatune ui` there
    was refused ("address already in use") by a server nothing named."""
    import psutil

    store(home).create_experiment("digits")
    port = free_port()
    started = []
    ui = _start_ui(home, port)
    try:
        wait_for(lambda: _healthy(port), 120, "the MLflow server")
        started = psutil.Process(ui.pid).children(recursive=True)
        ui.kill()  # SIGKILL to ovatune's own PID, as the OOM killer or `kill -9` would
        ui.wait(timeout=30)
        _, alive = psutil.wait_procs(started, timeout=40)
        assert not alive, [p.cmdline() for p in alive]  # the server and its guard are gone too
        again = _start_ui(home, port)
        wait_for(lambda: _healthy(port), 120, "a new server on the same port")
        assert again.poll() is None  # it serves: the port was free for it
        again.send_signal(signal.SIGTERM)
        assert again.wait(timeout=60) == 0
    finally:  # a server that outlived its ui is no longer this test's child: kill what was started
        for process in started:
            if process.is_running():
                process.kill()


def _write_sweep_through_the_callback(uri: str, experiment_id: str, per_loss: int, epochs: int) -> None:
    """A sweep's MLflow record as the driver writes it: parent runs per loss, and for each trial
    the real ``MlflowTrialCallback`` fed a stub Ray ``Trial`` and a result per epoch."""
    from ray import tune
    from ray.tune.experiment import Trial

    from tuning.tracking import parent_runs
    from tuning.trial_runs import MlflowTrialCallback

    tune.register_trainable("scale", lambda config: None)
    parents = parent_runs(MlflowClient(uri), experiment_id, "cifar10-scale", list(LOSSES), {"seed": 0})
    callback = MlflowTrialCallback(uri, experiment_id, "cifar10-scale", parents)
    callback.setup()
    rng = random.Random(0)
    for number in range(per_loss):  # the losses take turns, as the sweep's searcher starts them
        for loss in LOSSES:
            config = {"loss": loss, "trial_number": number, "epochs": epochs, "lr": 10 ** rng.uniform(-3, 0),
                      "adam_beta1": rng.uniform(0.85, 0.99), "adam_eps": 10 ** rng.uniform(-8, -5)}  # fmt: skip
            trial = Trial("scale", config=config, trial_id=f"{loss}_{number:05d}", stub=True)
            callback.on_trial_start(0, [trial], trial)
            for epoch in range(1, epochs + 1):
                result = {"epoch": epoch, "train_loss": 2.0 / epoch, "train_accuracy": 0.1 + epoch / 10,
                          "val_accuracy": 0.1 + epoch / 10 * rng.random(), "val_nll": 2.0 / epoch,
                          "val_brier": 0.9 / epoch, "val_ece": 0.1 / epoch, "learning_rate": config["lr"],
                          "fit_time_s": 0.2, "time_this_iter_s": 0.3}  # fmt: skip
                trial.update_last_result(result)
                callback.on_trial_result(0, [trial], trial, result)
            callback.on_trial_complete(0, [trial], trial)
    callback.on_experiment_end([])


@needs_chromium
def test_the_run_list_of_a_400_trial_experiment_renders_grouped_by_loss_within_10_s(home):
    """Issue 33, item 4: the paper's CIFAR-10 budget (4 losses x 100 trials) in the MLflow UI."""
    import re

    from playwright.sync_api import expect, sync_playwright

    client = store(home)
    experiment_id = client.create_experiment("cifar10")
    # 2 epochs each: the run list reads each run's latest metrics, not their history (5 epochs wrote for 10 s more)
    _write_sweep_through_the_callback(client.tracking_uri, experiment_id, per_loss=100, epochs=2)
    assert len(client.search_runs([experiment_id], "tags.`ovatune.kind` = 'trial'", max_results=1000)) == 400
    port = free_port()
    ui = _start_ui(home, port)
    searches = []  # (seconds, request body) of each run-list request the page makes
    try:
        wait_for(lambda: _healthy(port), 120, "the MLflow server")
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            page = browser.new_page(viewport={"width": 1500, "height": 950})
            page.on("requestfinished", lambda r: searches.append((r.timing["responseEnd"] / 1000, r.post_data))
                    if r.url.endswith("/runs/search") else None)  # fmt: skip
            started = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs")
            for loss in LOSSES:  # every loss's parent run, the trials grouped under it
                expect(page.get_by_role("link", name=f"{loss} · cifar10-scale", exact=True)).to_be_visible(
                    timeout=10_000
                )
            first = next(iter(LOSSES))
            link = page.get_by_role("link", name=f"{first} · cifar10-scale", exact=True)
            link.locator("xpath=ancestor::div[@role='gridcell']"
                         "//button[contains(@data-component-id,'runnamecellrenderer')]").click()  # fmt: skip
            expect(page.get_by_role("link", name=re.compile(rf"^{first}-trial-\d{{3}}$")).first).to_be_visible(
                timeout=10_000)  # fmt: skip
            rendered = time.perf_counter() - started
            if page.get_by_role("button", name="Close").count():
                page.get_by_role("button", name="Close").first.click()  # the assistant side panel
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "mlflow_ui_400_trials.png"))
            browser.close()
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)
    # its run-list requests, as benchmarks/scale.py times them: the newest runs first, a page at a time
    assert searches and all('"attributes.start_time DESC"' in body for _, body in searches), searches
    print(f"run list rendered in {rendered:.1f} s; run-list requests (s, body): {searches}")
    assert rendered < 10, f"the run list took {rendered:.1f} s"
