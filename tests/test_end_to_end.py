"""The whole service, for real: Ray Tune + Optuna sweeps, MLflow store, promotion, evaluation.

These start a local Ray, train real (small) models and write a real SQLite MLflow store, so they
take minutes: they are marked ``slow`` (``pytest -m slow`` runs only them; CI runs everything).
"""

import dataclasses
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from search_spaces import get_space, log_uniform
from trainables.losses import LOSSES

from launch import MARKER, environment, marked_processes, run_ovatune, start_ovatune, wait_for

pytestmark = pytest.mark.slow


def store(home: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{home / 'mlflow.db'}")


def runs_of(client: MlflowClient, experiment: str, kind: str) -> list:
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    return client.search_runs([experiment_id], filter_string=f"tags.`ovatune.kind` = '{kind}'", max_results=1000)


def test_toy2d_shows_the_papers_figure_1_effect_and_each_model_is_loaded_once_by_its_task(
    home, monkeypatch, in_process
):
    """The paper's Figure 1 on a real toy2d sweep, swept and evaluated in this process (on one local
    Ray), so that what the driver loads can be watched: it used to load every champion too (for two
    figures and its serving info); now it reads only the versions' serving.json, and the Ray task
    that measures a model is the one that loads it."""
    import mlflow.pyfunc

    import serving.bundle
    import tuning.evaluate
    from tuning.fan_out import ModelKey
    from tuning.fan_out import evaluate_models as fan_out

    home = home.parent / "a home"  # with a space: the commands it prints must still run as printed
    in_process("sweep", "toy2d", "--trials", "1", "--home", str(home), check=True)

    def no_load(*args, **kwargs):
        raise AssertionError("the driver loaded a model")

    monkeypatch.setattr(mlflow.pyfunc, "load_model", no_load)  # the registered pyfunc
    monkeypatch.setattr(serving.bundle, "load_serving_bundle", no_load)  # its weights
    handed: dict = {}  # what the tasks were given to load: resolved by the driver, once
    monkeypatch.setattr(tuning.evaluate, "evaluate_models", lambda *a, **k: handed.update(a[2]) or fan_out(*a, **k))
    evaluated = in_process("evaluate", "toy2d", "--home", str(home), check=True)
    printed = {line.split(":", 1)[0].strip(): line.split(":", 1)[1] for line in evaluated.stdout.splitlines()
               if line.startswith(("  browse the runs:", "  ship a model:"))}  # fmt: skip
    assert shlex.split(printed["browse the runs"]) == ["ovatune", "ui", "--home", str(home)]  # quoted: one word
    assert shlex.split(printed["ship a model"])[3:5] == ["--home", str(home)]
    figures = {p.name for p in (home / "reports" / "toy2d" / "figures").iterdir()}
    # drawn from what the tasks computed: the landscape of each model, the centres of the distance one
    assert {"confidence_landscape.png", "class_centres_pca.png"} <= figures
    card = MlflowClient(f"sqlite:///{home / 'mlflow.db'}").get_model_version("ovatune-toy2d-dm", "1").description
    assert "Threshold on confidence" in card  # the model card, from the serving info the driver read

    # Each task loads from where the files are, without an MLflow store of its own (SQLAlchemy's
    # models cost a task 1.1 s): what a task does with what it was handed, in a fresh process.
    assert sorted(handed) == sorted(ModelKey(loss) for loss in LOSSES)
    load = (
        "import sys; from tuning.fan_out import _load_classifier; "
        "[_load_classifier(uri, registered=True) for uri in sys.argv[1:]]; "
        "print(sorted(m for m in ('sqlalchemy', 'alembic') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", load, *handed.values()], capture_output=True, text=True,
                            env={**environment(), "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}"})  # fmt: skip
    assert loaded.returncode == 0 and loaded.stdout.strip() == "[]", loaded.stdout + loaded.stderr[-3000:]

    (evaluation,) = runs_of(store(home), "toy2d", "evaluation")
    metrics = evaluation.data.metrics
    for loss in LOSSES:
        # E.1: the models fit the training set (at most a couple of the 10 000 points missed)
        assert metrics[f"{loss}/train_accuracy"] >= 0.999, loss
    # Figure 1: affine logits stay confident far from the data; one-vs-all DM does not.
    for loss in ("softmax", "ova"):
        assert metrics[f"{loss}/ood_ring_r200_mean_confidence"] > 0.9, loss
    assert metrics["ova_dm/ood_ring_r200_mean_confidence"] < 0.1
    assert metrics["ova_dm/ood_ring_r60_mean_confidence"] < metrics["softmax/ood_ring_r60_mean_confidence"] - 0.5
    report = (home / "reports" / "toy2d" / "report.md").read_text()
    assert "ring_r200" in report and "confidence_landscape.png" in report


def test_killed_sweep_resumes_without_rerunning_or_duplicating(home, in_process):
    # One trial per worker (--pack 1): a finished trial beside one mid-way is then a long window (the next
    # trial's first epochs), where two packs of three finish within a second of each other and the poll
    # can miss it. A pack's kill and resume is test_packs'.
    args = ["sweep", "digits", "--trials", "3", "--epochs", "30", "--losses", "softmax,ova", "--pack", "1",
            "--name", "killed"]  # fmt: skip
    client = store(home)  # the store's schema first: two processes migrating one new SQLite file collide
    process = start_ovatune(*args, home=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip

    def progress() -> bool:
        try:
            trials = runs_of(client, "digits", "trial")
        except Exception:  # the store or experiment does not exist yet
            return False
        finished = [t for t in trials if t.info.status == "FINISHED"]
        mid = [
            t
            for t in trials
            if t.info.status == "RUNNING" and len(client.get_metric_history(t.info.run_id, "train_loss")) >= 6
        ]
        return len(finished) >= 1 and len(mid) >= 1

    try:
        wait_for(progress, 300, "one finished trial and one past its first checkpoint")
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the driver and everything it started, no clean-up
        process.wait()
    before = {t.info.run_id: t for t in runs_of(client, "digits", "trial")}
    logged_before = {i: [(m.step, m.timestamp) for m in client.get_metric_history(i, "train_loss")] for i in before}
    finished_before = {i: t for i, t in before.items() if t.info.status == "FINISHED"}

    in_process(*args[:2], "--resume", "--name", "killed", check=True)
    # the resumed driver copied its state into the job's folder file by file (test_storage: killed mid-copy)
    from ray.train._internal import storage as tune_storage

    assert tune_storage._upload_to_fs_path.__module__ == "tuning.storage"

    after = runs_of(client, "digits", "trial")
    by_loss = {loss: sorted(t.data.tags["ovatune.trial_number"] for t in after if t.data.tags["ovatune.loss"] == loss)
               for loss in ("softmax", "ova")}  # fmt: skip
    assert by_loss == {"softmax": ["0", "1", "2"], "ova": ["0", "1", "2"]}
    # the searchers' state was restored: the configurations are the seeded sequence of an uninterrupted sweep
    from tuning.sweep import PerLossSearch

    space = get_space("digits")
    searcher = PerLossSearch(space, ["softmax", "ova"], 3, 0)
    expected = {(c["loss"], str(c["trial_number"])): c for c in (searcher.suggest(f"t{i}") for i in range(6))}
    for trial in after:
        sampled = expected[(trial.data.tags["ovatune.loss"], trial.data.tags["ovatune.trial_number"])]
        for key in space.ranges:
            assert float(trial.data.params[key]) == pytest.approx(sampled[key], rel=1e-12), (trial.info.run_name, key)
    for trial in after:
        assert trial.info.status == "FINISHED", (trial.info.run_name, trial.data.tags)
        steps = [m.step for m in client.get_metric_history(trial.info.run_id, "train_loss")]
        assert steps == list(range(1, 31)), trial.info.run_name  # complete, nothing logged twice
        if trial.info.run_id in finished_before:  # not re-run: nothing logged after the kill
            assert len(logged_before[trial.info.run_id]) == 30, trial.info.run_name
    for trial in after:  # what was logged before the kill stays as it was, and is not logged again
        if trial.info.run_id in logged_before:
            history = [(m.step, m.timestamp) for m in client.get_metric_history(trial.info.run_id, "train_loss")]
            assert history[: len(logged_before[trial.info.run_id])] == logged_before[trial.info.run_id]
    # Interrupted trials continued from their checkpoints: no trial reported epoch 1 twice.
    for result_file in (home / "ray_results" / "killed").glob("*/result.json"):
        epochs = [json.loads(line)["epoch"] for line in result_file.read_text().splitlines() if line.strip()]
        assert epochs.count(1) == 1 and max(epochs) == 30, result_file.parent.name


def test_diverging_trials_are_stopped_marked_and_never_promoted(home, local_ray):
    from tuning.promote import best_results, finish_parents, promote
    from tuning.settings import resolve_settings
    from tuning.sweep import PerLossSearch, SweepRequest, run_sweep

    toy = get_space("toy2d")
    space = dataclasses.replace(toy, name="toy2d_diverging", ranges={"lr": log_uniform(1e-2, 1e5)})

    # A seed whose four samples mix trainable rates (< 0.1) and certain divergence (> 1e3, seen to
    # give a NaN loss within 60 SGD steps).
    def sampled(seed: int) -> list[float]:
        searcher = PerLossSearch(space, ["softmax"], 4, seed)
        return [searcher.suggest(f"t{i}")["lr"] for i in range(4)]

    seed = next(s for s in range(100) if min(sampled(s)) < 0.1 and max(sampled(s)) > 1e3)
    settings = resolve_settings(home)
    request = SweepRequest(space, ["softmax"], 4, seed=seed, overrides={"epochs": 3, "steps_per_epoch": 20}, verbose=0)
    outcome = run_sweep(request, settings)

    results = list(outcome.results)
    assert len(results) == 4 and all(r.error is None for r in results)  # divergence is not an error
    diverged = [r for r in results if r.metrics.get("diverged")]
    healthy = [r for r in results if not r.metrics.get("diverged")]
    assert diverged and healthy
    for r in diverged:
        assert r.config["lr"] > 1 and "non-finite training loss" in r.metrics["stop_reason"]
        assert math.isnan(r.metrics["val_accuracy"]) and r.metrics["epoch"] == 1  # stopped at once
    best = best_results(outcome.results, space)["softmax"]
    assert not best.metrics["diverged"] and best.config["lr"] < 1

    promoted = promote(outcome.results, space, outcome.name, outcome.experiment_id, settings)
    assert set(promoted.promotions) == {"softmax"} and promoted.failures == {}
    client = MlflowClient(settings.tracking_uri)
    finish_parents(client, outcome.parents, promoted, space.metric)
    version = client.get_model_version_by_alias("ovatune-toy2d_diverging-softmax", "champion")
    trials = runs_of(client, "toy2d_diverging", "trial")
    by_run = {t.info.run_id: t for t in trials}
    assert by_run[version.run_id].data.tags["ovatune.outcome"] == "completed"
    marked = [t for t in trials if t.data.tags["ovatune.outcome"] == "diverged"]
    assert len(marked) == len(diverged)
    assert all(t.info.status == "KILLED" and "non-finite" in t.data.tags["ovatune.stop_reason"] for t in marked)


def test_two_sweeps_started_together_in_one_home_keep_a_consistent_store_and_verbose_shows_ray_tunes_table(home):
    args = ["sweep", "digits", "--smoke-test", "--losses", "softmax,ova_dm"]
    marked = environment(**{MARKER: f"two-sweeps-{os.getpid()}"})  # finds each command's processes, Ray's too
    sweeps = [  # the second with --verbose: Ray Tune's table and the libraries' notices
        start_ovatune(*args, *extra, home=home, env=marked, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for extra in ([], ["--verbose"])
    ]
    outputs = [s.communicate(timeout=600)[0] for s in sweeps]
    assert [s.returncode for s in sweeps] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    plain, verbose = outputs
    assert "progress per loss" in plain and "== Status ==" not in plain
    assert "== Status ==" in verbose and "val_accuracy" in verbose  # Ray Tune's table, not ovatune's line
    assert "progress per loss" not in verbose
    # MLflow's own INFO logging, dropped without --verbose (Ray's token notice is kept too, but Ray
    # prints it only where a token exists, which a fresh CI machine may not have).
    assert "INFO mlflow.pyfunc: Validating input example" in verbose
    assert "Validating input example" not in plain
    # each command ended its local Ray with it: no GCS, raylet, agent or worker outlives it
    assert marked_processes(marked[MARKER]) == []
    names = [re.search(r"^sweep (\S+):", out, re.MULTILINE).group(1) for out in outputs]
    assert names[0] != names[1]
    client = store(home)
    experiment = client.get_experiment_by_name("digits").experiment_id
    for name in names:
        trials = client.search_runs([experiment], f"tags.`ovatune.sweep` = '{name}' and tags.`ovatune.kind` = 'trial'")
        assert len(trials) == 2 and all(t.info.status == "FINISHED" for t in trials)
    deleted = client.search_runs([experiment], run_view_type=ViewType.DELETED_ONLY)
    assert deleted == []  # no sweep replaced the other's runs

    # a name that exists is refused without --resume, before anything runs or is deleted
    again = run_ovatune(*args, "--name", names[0], home=home, env=marked, timeout=120)
    assert again.returncode == 2 and f"a sweep named {names[0]!r} already exists" in again.stderr
    assert f"--resume --name {names[0]}" in again.stderr
    assert marked_processes(marked[MARKER]) == []  # nor of a refused one
    assert client.search_runs([experiment], run_view_type=ViewType.DELETED_ONLY) == []


@pytest.mark.parametrize("pack", [1, 4])  # one trial per worker; each loss's four trials as one pack
def test_asha_stops_trials_within_each_loss_and_every_loss_keeps_a_champion(home, local_ray, pack):
    from tuning.promote import best_results
    from tuning.settings import resolve_settings
    from tuning.sweep import SweepRequest, run_sweep

    space = get_space("digits")
    request = SweepRequest(space, ["softmax", "ova_dm"], 4, scheduler="asha", pack=pack,
                           overrides={"epochs": 10, "checkpoint_every": 1}, verbose=0)  # fmt: skip
    outcome = run_sweep(request, resolve_settings(home))
    results = list(outcome.results)
    assert len(results) == 8 and all(r.error is None for r in results)
    epochs = {
        loss: sorted(r.metrics["epoch"] for r in results if r.config["loss"] == loss) for loss in ("softmax", "ova_dm")
    }
    for loss, reached in epochs.items():
        assert reached[-1] == 10, (loss, reached)  # each loss's own bracket lets its best trials finish
    assert any(e < 10 for reached in epochs.values() for e in reached)  # and ASHA did stop some
    assert set(best_results(outcome.results, space)) == {"softmax", "ova_dm"}
    stopped = [t for t in runs_of(store(home), "digits", "trial") if t.data.tags["ovatune.outcome"] == "stopped"]
    assert stopped and all(t.info.status == "KILLED" for t in stopped)


@pytest.mark.xdist_group("ray_current_cluster")  # rewrites the record that test_jobs' `ray start` keeps
def test_a_stale_ray_start_record_does_not_capture_a_local_run_and_work_meanwhile_runs_on_a_thread(tmp_path):
    # `ray start` records its address in /tmp/ray/ray_current_cluster and a bare ray.init() joins it,
    # hanging when that cluster is gone; without --address, ovatune always starts its own local Ray.
    # What init_ray is given to do meanwhile runs on another thread, is done when it returns, and a
    # failure there stops nothing (the command meets it again where it does the work itself).
    record = Path("/tmp/ray/ray_current_cluster")
    before = record.read_text() if record.exists() else None
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text("192.0.2.254:6379")  # nothing listens there
    try:
        code = ("import threading, time; import ray; from tuning.cluster import init_ray\n"
                "seen = []\n"
                "def meanwhile():\n"
                "    time.sleep(1); seen.append(threading.current_thread() is not threading.main_thread()); 1 / 0\n"
                "init_ray(None, meanwhile=meanwhile); print(seen, ray.cluster_resources()['CPU'])")  # fmt: skip
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        seen, cpus = result.stdout.strip().splitlines()[-1].rsplit(" ", 1)
        assert seen == "[True]" and float(cpus) >= 1, result.stdout
        assert "ZeroDivisionError" not in result.stderr
    finally:
        if before is None:
            record.unlink(missing_ok=True)
        else:
            record.write_text(before)


def test_metric_val_nll_selects_the_lowest_nll_trial_and_is_recorded(home, in_process):
    """``--metric val_nll``: promotion picks the trial with the lowest validation NLL, the version and
    the parent run say what selected it, and a later sweep by accuracy is compared on the champion's
    own recorded accuracy (every validation metric is tagged on each version)."""
    out = in_process("run", "digits", "--losses", "softmax", "--trials", "4", "--epochs", "1", "--metric", "val_nll",
                     check=True).stdout  # fmt: skip
    client = store(home)
    trials = runs_of(client, "digits", "trial")
    assert len(trials) == 4
    lowest = min(trials, key=lambda r: r.data.metrics["val_nll"])
    version = client.get_model_version("ovatune-digits-softmax", "1")
    assert version.tags["trial_number"] == lowest.data.tags["ovatune.trial_number"]
    assert version.tags["selection_metric"] == "val_nll"
    assert float(version.tags["val_nll"]) == pytest.approx(lowest.data.metrics["val_nll"])
    assert float(version.tags["val_accuracy"]) == pytest.approx(lowest.data.metrics["val_accuracy"])
    (parent,) = runs_of(client, "digits", "parent")
    assert (parent.data.params["metric"], parent.data.params["mode"]) == ("val_nll", "min")
    assert parent.data.metrics["best_val_nll"] == pytest.approx(lowest.data.metrics["val_nll"])
    assert f"val_nll {lowest.data.metrics['val_nll']:.4f}" in out

    # The report says what selected the model, and which hyperparameters mattered (4 finished trials:
    # enough for fANOVA), in a table, a figure and the evaluation run's metrics.
    report = (home / "reports" / "digits" / "report.md").read_text()
    assert "by validation `val_nll`" in report and f"| `val_nll` {lowest.data.metrics['val_nll']:.4f} |" in report
    section = report.split("## Hyperparameter importance")[1].split("\n## ")[0]
    (row,) = [line for line in section.splitlines() if line.startswith("| softmax |")]
    assert sum(float(cell) for cell in row.strip("|").split("|")[1:]) == pytest.approx(1.0, abs=0.02)
    assert "![hyperparameter_importance](figures/hyperparameter_importance.png)" in report
    (evaluation,) = runs_of(client, "digits", "evaluation")
    importance = {k: v for k, v in evaluation.data.metrics.items() if k.startswith("softmax/importance_")}
    assert set(importance) == {f"softmax/importance_{name}" for name in get_space("digits").ranges}

    # A sweep by accuracy (the default) now competes on the champion's recorded accuracy.
    again = in_process("sweep", "digits", "--losses", "softmax", "--trials", "1", "--epochs", "1", "--promote", "better",
                       check=True).stdout  # fmt: skip
    held = f"v1 (val_accuracy {version.tags['val_accuracy']})"
    assert f"beat {held}" in again or f"did not beat {held}" in again, again
