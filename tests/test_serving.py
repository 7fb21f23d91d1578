"""The whole service on digits, then export, serving and the MLflow UI, for real.

One module-scoped ``ovatune run digits`` (2 trials per loss) feeds every test: what the run prints
and records (``test_run_digits_end_to_end``, the module's first test: it reads the store, reports
and figures as the run left them, before the tests that register a broken champion and evaluate
again; the module runs on one worker, in file order), exports that round-trip through torch.export,
TorchScript, ONNX (onnxruntime) and MLflow; `mlflow models serve` answers over HTTP; headless Chromium (Debian's
package, driven by Playwright) browses the MLflow UI and saves screenshots under ``test-artifacts/``.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from serving import ExportedModel, raw_inputs
from trainables.checksums import TamperedFile
from trainables.data import load_dataset
from trainables.losses import LOSSES
from tuning.options import FORMATS

from browser import ARTIFACTS, launch_chromium, needs_chromium
from launch import environment, free_port, run_ovatune, start_ovatune, stop_group

# one worker runs the module: its tests share one sweep (the module's `home`), made once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("test_serving")]

BIN = Path(sys.executable).parent


def _wait_for(url: str, seconds: float, what: str) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{what} did not answer at {url} within {seconds} s")


TRIALS, EPOCHS = 2, 6  # per loss: two, so that promotion has a choice to get right


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> subprocess.CompletedProcess:
    """The module's ``ovatune run digits``, finished: what it printed."""
    home = tmp_path_factory.mktemp("serving") / "home"
    return run_ovatune("run", "digits", "--trials", str(TRIALS), "--epochs", str(EPOCHS), home=home, check=True)


@pytest.fixture(scope="module")
def home(run) -> Path:
    """The module's ovatune home (its MLflow store, reports): the tests that change its registry put it back."""
    return Path(run.args[run.args.index("--home") + 1])


@pytest.fixture(scope="module")
def expected(home):
    """loss -> (raw test inputs, the in-process outputs of the registered champion, its serving info)."""
    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    data = load_dataset("digits")
    raw = raw_inputs(data.preprocessing, data.test.x)  # (N, 8, 8, 1), values 0–255
    out = {}
    for loss in LOSSES:
        pyfunc = mlflow.pyfunc.load_model(f"models:/ovatune-digits-{loss}@champion").unwrap_python_model()
        with torch.no_grad():
            outputs = [o.numpy() for o in pyfunc.model(raw)]
        out[loss] = (
            raw.numpy(),
            dict(zip(("probabilities", "confidence", "prediction", "none_of_the_above"), outputs)),
            pyfunc.info,
        )
    return out


def runs_of(client: MlflowClient, experiment: str, kind: str) -> list:
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    return client.search_runs([experiment_id], filter_string=f"tags.`ovatune.kind` = '{kind}'", max_results=1000)


def _inputs(run) -> set[tuple[str, str, str]]:
    """A run's MLflow dataset inputs as (name, digest, split)."""
    return {(i.dataset.name, i.dataset.digest, next(t.value for t in i.tags if t.key == "mlflow.data.context"))
            for i in run.inputs.dataset_inputs}  # fmt: skip


def test_run_digits_end_to_end(run, home):
    from trainables.data import load_dataset
    from trainables.data.provenance import content_digest

    data = load_dataset("digits")  # what every trial and the evaluation must say they used
    digests = {"train": content_digest(data.train.x, data.train.y), "validation": content_digest(data.val.x, data.val.y),
               "test": content_digest(data.test.x, data.test.y), "ood": content_digest(data.ood["photo_patches"])}  # fmt: skip
    ran = run
    out = ran.stdout
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    # What a user reads (not a terminal here: plain lines): ovatune's progress, no Ray table, no library notices
    assert "progress per loss: trials done/all and the best val_accuracy so far" in out
    assert re.search(
        r"^softmax 2/2 \.\d{3} · dm 2/2 \.\d{3} · ova 2/2 \.\d{3} · ova_dm 2/2 \.\d{3} · (\d+ min )?\d+ s$", out, re.M
    ), out
    assert "== Status ==" not in out and "Result logdir" not in out and "(pid=" not in out
    # (past a minute the time reads "1 min 05 s": the suite at bcef816 took that long on a busy machine)
    assert re.search(r"^evaluated 4 of 4 models in (\d+ min )?\d+ s$", out, re.M), out[-3000:]
    for notice in ("Warning", "Token authentication", "Successfully registered", "Validating input example"):
        assert notice not in out and notice not in ran.stderr, notice
    assert "ovatune export digits" in out and "AUROC photo_patches: OOD detection" in out

    experiment = client.get_experiment_by_name("digits")
    assert "8×8 handwritten digits" in experiment.tags["mlflow.note.content"]
    parents = runs_of(client, "digits", "parent")
    trials = runs_of(client, "digits", "trial")
    assert sorted(p.data.tags["ovatune.loss"] for p in parents) == sorted(LOSSES)
    assert len(trials) == 8 and all(t.info.status == "FINISHED" for t in trials)
    for parent in parents:
        loss = parent.data.tags["ovatune.loss"]
        children = [t for t in trials if t.data.tags["mlflow.parentRunId"] == parent.info.run_id]
        assert sorted(c.info.run_name for c in children) == [f"{loss}-trial-{i:03d}" for i in range(TRIALS)]
        for child in children:
            assert child.data.params["loss"] == loss and float(child.data.params["lr"]) > 0
            assert child.data.tags["ovatune.outcome"] == "completed" and child.data.tags["ovatune.ray_trial_id"]
            history = client.get_metric_history(child.info.run_id, "val_accuracy")
            assert [m.step for m in history] == list(range(1, EPOCHS + 1))
            assert {"train_loss", "val_nll", "val_ece"} <= set(child.data.metrics)
            # the trial's own process, per epoch, in the run's system metrics (trainables.system_metrics)
            cpu = client.get_metric_history(child.info.run_id, "system/cpu_utilization_percentage")
            assert [m.step for m in cpu] == list(range(1, EPOCHS + 1)) and all(m.value > 0 for m in cpu)
            assert child.data.metrics["system/process_memory_rss_megabytes"] > 50
            assert _inputs(child) == {("digits", digests["train"], "train"),
                                      ("digits", digests["validation"], "validation")}  # fmt: skip

        # The champion is the child with the best final validation accuracy.
        version = client.get_model_version_by_alias(f"ovatune-digits-{loss}", "champion")
        best = max(children, key=lambda c: (c.data.metrics["val_accuracy"], -c.data.metrics["val_nll"]))
        assert version.run_id == best.info.run_id
        assert parent.info.status == "FINISHED" and "test_accuracy" in parent.data.metrics

    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model("models:/ovatune-digits-ova_dm@champion")
    from serving import raw_inputs
    from trainables.data import load_dataset

    data = load_dataset("digits")
    outputs = model.predict(raw_inputs(data.preprocessing, data.test.x[:50]).reshape(50, -1).numpy())
    probs = outputs["probabilities"]
    assert probs.shape == (50, 10) and (probs > 0).all() and (probs <= 1).all()
    assert (outputs["prediction"] == probs.argmax(axis=1)).all()

    (evaluation,) = runs_of(client, "digits", "evaluation")
    assert _inputs(evaluation) == {("digits", digests["test"], "test"), ("photo_patches", digests["ood"], "ood")}
    (test_input,) = [i for i in evaluation.inputs.dataset_inputs if i.dataset.name == "digits"]
    assert json.loads(test_input.dataset.profile)["num_examples"] == 360
    assert json.loads(test_input.dataset.source) == {"tags": {"loader": "trainables.data.digits.load_digits"}}
    figures = {a.path for a in client.list_artifacts(evaluation.info.run_id, "figures")}
    assert {"figures/reliability.png", "figures/shift.png", "figures/accuracy_vs_confidence.png",
            "figures/confidence_histograms_photo_patches.png", "figures/class_centres_pca.png"} <= figures  # fmt: skip
    assert "report.md" in {a.path for a in client.list_artifacts(evaluation.info.run_id)}
    metrics = evaluation.data.metrics
    for loss in LOSSES:
        assert 0 <= metrics[f"{loss}/test_ece"] <= 1 and 0 <= metrics[f"{loss}/ood_photo_patches_auroc"] <= 1
        assert metrics[f"{loss}/shift_gaussian_noise_5_accuracy"] <= metrics[f"{loss}/test_accuracy"] + 0.05
        assert f"| {loss} |" in out

    report = (home / "reports" / "digits" / "report.md").read_text()
    assert "renormalised" in report and "![shift](figures/shift.png)" in report
    # Intervals and paired differences over the 360 test examples, in the report and the run.
    assert "**What the 360 test examples resolve**" in report and "## Differences between the losses" in report
    for loss in LOSSES:
        low, high = metrics[f"{loss}/test_accuracy_ci_low"], metrics[f"{loss}/test_accuracy_ci_high"]
        assert low <= metrics[f"{loss}/test_accuracy"] <= high and high - low < 0.2
    comparisons = mlflow.artifacts.load_dict(f"{evaluation.info.artifact_uri}/comparisons.json")
    assert len(comparisons) == 4 * 6
    # means of per-example terms: the estimate lies in its interval (ECE's may not: resampling biases it up)
    assert all(c["low"] <= c["estimate"] <= c["high"] for c in comparisons if c["metric"] != "ece")
    assert (home / "reports" / "digits" / "figures" / "reliability.png").stat().st_size > 10_000
    assert str(home / "reports" / "digits" / "report.md") in out


def _assert_same(got: dict, want: dict, threshold: float) -> float:
    difference = float(np.abs(np.asarray(got["probabilities"], np.float64) - want["probabilities"]).max())
    assert difference <= 1e-5
    np.testing.assert_array_equal(np.asarray(got["prediction"]), want["prediction"])
    clear = np.abs(want["confidence"] - threshold) > 1e-5  # flags may only differ right at the threshold
    np.testing.assert_array_equal(np.asarray(got["none_of_the_above"], bool)[clear], want["none_of_the_above"][clear])
    return difference


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_exports_round_trip_to_1e_5(home, expected, fmt, tmp_path):
    ran = run_ovatune("export", "digits", "--format", fmt, "--out", str(tmp_path), home=home, check=True)
    # no library's deprecation warnings; the deprecated format says so once, in ovatune's words
    assert "FutureWarning" not in ran.stderr and "DeprecationWarning" not in ran.stderr, ran.stderr[-3000:]
    assert ran.stderr.count("torch_export is its successor") == (fmt == "torchscript"), ran.stderr[-3000:]
    differences = {}
    for loss, (raw, want, info) in expected.items():
        folder = tmp_path / loss / fmt
        exported = ExportedModel(folder)
        assert exported.info["class_names"] == [str(i) for i in range(10)] and exported.info["loss"] == loss
        differences[loss] = _assert_same(exported(raw), want, info["threshold"])
        card = (folder / "model_card.md").read_text()
        assert f"{info['threshold']:.6g}" in card and "## Evaluation" in card and "accuracy" in card
        manifest = json.loads((folder / "manifest.json").read_text())
        assert "model_card.md" in manifest and "serving.json" in manifest
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"roundtrip_{fmt}.json").write_text(json.dumps(differences, indent=1))


# Runs in a fresh process: the default export read back with torch alone, as a user without ovatune would
TORCH_ALONE = """
import sys, torch
program = torch.export.load(sys.argv[1]).module()
with torch.no_grad():
    shapes = [tuple(program(torch.rand(n, *map(int, sys.argv[2:])))[0].shape) for n in (1, 7)]
print(*shapes, sorted(m for m in ("serving", "trainables", "tuning", "mlflow") if m in sys.modules))
"""


def test_the_default_export_is_a_torch_export_program_that_torch_alone_runs(home, expected, tmp_path, in_process):
    in_process("export", "digits", "--losses", "ova_dm", "--out", str(tmp_path), "--home", str(home), check=True)
    folder = tmp_path / "ova_dm" / "torch_export"  # the default format: not the deprecated TorchScript
    assert json.loads((folder / "serving.json").read_text())["format"] == "torch_export"
    shape = [str(n) for n in expected["ova_dm"][2]["raw_input_shape"]]
    done = subprocess.run([sys.executable, "-c", TORCH_ALONE, str(folder / "model.pt2"), *shape],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0 and "Warning" not in done.stderr, done.stderr[-3000:]
    # batches of 1 and 7 (the export's batch is dynamic; it was traced at 2), 10 classes, and no module
    # of ovatune (or MLflow) imported
    assert done.stdout.strip() == "(1, 10) (7, 10) []", done.stdout


def test_threshold_keeps_95_percent_of_validation(expected):
    data = load_dataset("digits")
    for loss, (_, _, info) in expected.items():
        with torch.no_grad():
            confidence = mlflow.pyfunc.load_model(f"models:/ovatune-digits-{loss}@champion").predict(
                raw_inputs(data.preprocessing, data.val.x).reshape(len(data.val.x), -1).numpy()
            )["confidence"]
        kept = (confidence >= info["threshold"]).mean()
        # at least 95% kept, and it is the largest such threshold: any higher one keeps fewer than 95%
        assert kept >= 0.95 and (confidence > info["threshold"]).mean() < 0.95, (loss, kept)


def test_registered_pyfunc_predicts_on_dataframe_and_array(home, expected):
    raw, want, info = expected["ova"]
    model = mlflow.pyfunc.load_model("models:/ovatune-digits-ova@champion")
    flat = raw.reshape(len(raw), -1)
    for given in (flat, pd.DataFrame(flat)):
        _assert_same(model.predict(given), want, info["threshold"])


def test_tampered_export_is_refused(home, tmp_path, in_process):
    in_process("export", "digits", "--losses", "ova", "--format", "torchscript", "--out", str(tmp_path), "--home",
               str(home), check=True)  # fmt: skip
    folder = tmp_path / "ova" / "torchscript"
    ExportedModel(folder)  # intact: loads
    for name in ("model.pt", "serving.json"):
        copy = tmp_path / f"tampered-{name}"
        shutil.copytree(folder, copy)
        data = bytearray((copy / name).read_bytes())
        data[len(data) // 2] ^= 0x01
        (copy / name).write_bytes(bytes(data))
        with pytest.raises(TamperedFile, match=f"{name} does not match the SHA-256"):
            ExportedModel(copy)


def test_mlflow_models_serve_answers_like_the_model_in_process(home, expected):
    port = free_port()
    env = environment(
        MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}", PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}"
    )
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "models", "serve", "-m", "models:/ovatune-digits-ova_dm@champion",
         "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        _wait_for(f"http://127.0.0.1:{port}/ping", 180, "mlflow models serve")
        raw, want, info = expected["ova_dm"]
        body = json.dumps({"inputs": raw.reshape(len(raw), -1).tolist()}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=60) as response:
            predictions = json.load(response)["predictions"]
        assert set(predictions) == {"probabilities", "confidence", "prediction", "none_of_the_above"}
        _assert_same(predictions, want, info["threshold"])
    finally:
        stop_group(server, timeout=30)


@needs_chromium
def test_the_mlflow_ui_in_a_real_browser(home):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect, sync_playwright

    from trainables.data.provenance import content_digest

    data = load_dataset("digits")
    train_digest, test_digest = content_digest(data.train.x, data.train.y), content_digest(data.test.x, data.test.y)
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    (trial,) = client.search_runs([client.get_experiment_by_name("digits").experiment_id],
                                  filter_string="attributes.run_name = 'ova_dm-trial-000'")  # fmt: skip
    port = free_port()
    ui = start_ovatune("ui", "--port", str(port), home=home,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        _wait_for(f"{url}/health", 120, "ovatune ui")
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            page = browser.new_page(viewport={"width": 1500, "height": 950})
            page.goto(f"{url}/#/experiments")
            page.get_by_text("Model training", exact=True).click()
            page.get_by_role("link", name="digits").click()
            expect(page.get_by_text("evaluation · ").first).to_be_visible(timeout=60_000)
            if page.get_by_role("button", name="Close").count():
                page.get_by_role("button", name="Close").first.click()  # the assistant side panel
            for loss in LOSSES:  # each parent run, expanded to show its trial
                link = page.get_by_role("link", name=re.compile(rf"^{loss} · digits-"))
                expect(link).to_be_visible()
                link.locator("xpath=ancestor::div[@role='gridcell']"
                             "//button[contains(@data-component-id,'runnamecellrenderer')]").click()  # fmt: skip
                expect(page.get_by_role("link", name=f"{loss}-trial-000")).to_be_visible(timeout=20_000)
            # The Dataset column: every trial names the split it trained on, with the split's digest
            trained_on = page.get_by_text(f"digits ({train_digest})", exact=True)
            expect(trained_on).to_have_count(len(LOSSES) * TRIALS, timeout=20_000)
            expect(page.get_by_text(f"digits ({test_digest})", exact=True)).to_be_visible()  # the evaluation's
            page.screenshot(path=str(ARTIFACTS / "mlflow_ui_runs.png"))
            trained_on.first.click()  # its page: the split, its size, seed and source
            expect(page.get_by_text("num examples:")).to_be_visible(timeout=20_000)
            expect(page.get_by_text(f"{len(data.train)}", exact=True)).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "mlflow_ui_dataset.png"))
            page.keyboard.press("Escape")

            page.get_by_role("link", name=re.compile(r"^evaluation · ")).click()
            page.get_by_role("tab", name="Artifacts").click()
            page.get_by_text("figures", exact=True).click()
            page.get_by_text("shift.png", exact=True).click()
            expect(page.get_by_text("figures/shift.png", exact=True)).to_be_visible(timeout=20_000)
            expect(page.locator("img[src^='blob:'], img[src^='data:image/png']").first).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "mlflow_ui_figures.png"))

            page.goto(f"{url}/#/models")
            try:  # the registry greets a new browser with an announcement of its alias-based UI
                page.get_by_role("button", name="Try it now").click(timeout=10_000)
            except PlaywrightTimeout:
                pass
            for loss in LOSSES:
                row = page.get_by_role("row").filter(
                    has=page.get_by_role("link", name=f"ovatune-digits-{loss}", exact=True)
                )
                expect(row).to_contain_text("champion", timeout=20_000)
            page.screenshot(path=str(ARTIFACTS / "mlflow_ui_models.png"))

            page.get_by_role("link", name="ovatune-digits-ova_dm", exact=True).click()
            page.get_by_role("link", name="Version 1").first.click()
            expect(page.get_by_text("Model card: ovatune-digits-ova_dm v1")).to_be_visible(timeout=20_000)
            page.screenshot(path=str(ARTIFACTS / "mlflow_ui_model_card.png"), full_page=True)

            # A trial's System metrics tab: what its own process used, per epoch (trainables.system_metrics)
            page.goto(f"{url}/#/experiments/{trial.info.experiment_id}/runs/{trial.info.run_id}")
            page.get_by_role("tab", name=re.compile("System metrics")).click()
            for chart in ("cpu_utilization_percentage", "process_memory_rss_megabytes"):
                expect(page.get_by_text(chart, exact=True)).to_be_visible(timeout=20_000)
                # drawn: its legend names the run's series
                legend = page.get_by_text(f"ova_dm-trial-000 (system/{chart})", exact=True)
                expect(legend).to_be_visible(timeout=20_000)
            page.screenshot(path=str(ARTIFACTS / "mlflow_ui_system_metrics.png"))
            browser.close()
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)


def test_a_failed_export_leaves_the_previous_one_and_the_other_losses_are_exported(home, tmp_path, in_process):
    in_process("export", "digits", "--losses", "ova", "--format", "onnx", "--out", str(tmp_path), "--home", str(home),
               check=True)  # fmt: skip
    before = {p.name: p.read_bytes() for p in (tmp_path / "ova" / "onnx").iterdir()}
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    name = "ovatune-digits-ova"
    champion = client.get_model_version_by_alias(name, "champion")
    gone = tmp_path / "gone"  # a champion whose artifacts are missing
    broken = client.create_model_version(name, source=gone.as_uri(), run_id=champion.run_id)
    client.set_registered_model_alias(name, "champion", broken.version)
    try:
        result = in_process("export", "digits", "--losses", "ova,softmax", "--format", "onnx", "--out", str(tmp_path),
                            "--home", str(home))  # fmt: skip
    finally:
        client.set_registered_model_alias(name, "champion", champion.version)
        client.delete_model_version(name, broken.version)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("ovatune: error:")]
    assert f"ova: exporting {name} v{broken.version}" in error and str(gone) in error and "left as it was" in error
    assert {p.name: p.read_bytes() for p in (tmp_path / "ova" / "onnx").iterdir()} == before  # untouched
    ExportedModel(tmp_path / "ova" / "onnx")  # and still verifies
    ExportedModel(tmp_path / "softmax" / "onnx")  # the other loss was exported all the same
    assert not [p for p in (tmp_path / "ova").iterdir() if p.name.startswith(".")]  # no partial folder left

    a_file = tmp_path / "a-file"
    a_file.write_text("")
    refused = in_process("export", "digits", "--losses", "ova", "--out", str(a_file), "--home", str(home))
    assert refused.returncode == 2 and refused.stderr.count("is a file, not a folder") == 1  # once, not per loss
    assert "Traceback" not in refused.stderr


def test_a_broken_champion_fails_alone_and_the_others_are_evaluated(home, in_process):
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    name = "ovatune-digits-ova"
    champion = client.get_model_version_by_alias(name, "champion")
    gone = home.parent / "gone"  # a champion whose artifacts are missing
    broken = client.create_model_version(name, source=gone.as_uri(), run_id=champion.run_id)
    client.set_registered_model_alias(name, "champion", broken.version)
    try:
        result = in_process("evaluate", "digits", "--home", str(home))
    finally:
        client.set_registered_model_alias(name, "champion", champion.version)
        client.delete_model_version(name, broken.version)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("ovatune: error:")]
    assert len(errors) == 1 and f"ova: cannot load {name} v{broken.version}" in errors[0] and str(gone) in errors[0]
    table = [line.split("|")[1].strip() for line in result.stdout.splitlines() if line.startswith("| ")]
    assert {"softmax", "dm", "ova_dm"} <= set(table) and "ova" not in table  # the other three were evaluated
