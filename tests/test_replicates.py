"""``tuning.replicates``: champions' configurations retrained with new seeds as real Ray Tune trials,
logged under their MLflow parents, resumed after a killed driver without duplicating a run, and
measured over seeds by ``ovatune evaluate``."""

import json
import os
import shlex
import signal
import subprocess
import time

import pytest
from mlflow.tracking import MlflowClient

from tuning.replicates import GivenConfigs, replicate_points, replicate_seed, selected_by_metric

from launch import sigterm_at_mark, start_ovatune

EPOCHS = 30


def test_given_configs_hands_out_each_config_once_and_resumes_where_it_stopped(tmp_path):
    configs = [{"loss": "softmax", "trial_number": n, "seed": replicate_seed(0, n)} for n in range(3)]
    searcher = GivenConfigs(configs)
    assert searcher.suggest("a") == configs[0]
    searcher.save(str(tmp_path / "state"))
    restored = GivenConfigs([])
    restored.restore(str(tmp_path / "state"))
    assert [restored.suggest("b"), restored.suggest("c")] == configs[1:]
    assert restored.suggest("d") == GivenConfigs.FINISHED


def test_replicate_points_run_each_champion_under_the_current_config_keys():
    # A champion registered before `method` became `loss` (trainables.trial_config.RENAMED_KEYS):
    # its replicates are handed out, tracked and grouped under `loss`, as a resumed sweep's trials are.
    configs = {"ova": {"method": "ova", "lr": 0.1, "threads": 4}, "softmax": {"loss": "softmax", "lr": 0.2}}
    points = replicate_points(configs, {"threads": 1, "workers_per_trial": 1}, seeds=2, seed=0)
    assert [(p["loss"], p["trial_number"]) for p in points] == [("ova", 0), ("softmax", 0), ("ova", 1), ("softmax", 1)]
    assert all("method" not in p and p["threads"] == 1 for p in points)  # the set's trial shape wins
    assert points[0]["seed"] == points[1]["seed"] == replicate_seed(0, 0) != points[2]["seed"]


def test_a_replicate_set_shows_the_metric_its_champions_were_selected_by():
    from types import SimpleNamespace

    from search_spaces import get_space

    space = get_space("digits")
    by_nll = {loss: SimpleNamespace(tags={"selection_metric": "val_nll"}) for loss in ("softmax", "ova")}
    assert selected_by_metric(space, by_nll) == ("val_nll", "min")  # it showed val_accuracy, max
    mixed = {**by_nll, "dm": SimpleNamespace(tags={"selection_metric": "val_ece"})}
    assert selected_by_metric(space, mixed) == (space.metric, space.mode)


def test_replicate_seeds_differ_by_number_and_not_by_loss():
    seeds = [replicate_seed(0, n) for n in range(5)]
    assert len(set(seeds)) == 5 and 0 not in seeds  # never the sweep's own default seed
    assert replicate_seed(1, 0) != replicate_seed(0, 0)


def _runs(client: MlflowClient, kind: str) -> list:
    experiment = client.get_experiment_by_name("digits").experiment_id
    return client.search_runs([experiment], filter_string=f"tags.`ovatune.kind` = '{kind}'", max_results=1000)


@pytest.mark.slow
def test_killed_replicates_resume_without_duplicating_runs_and_evaluate_reports_over_seeds(home, tmp_path, in_process):
    in_process("sweep", "digits", "--losses", "softmax,ova_dm", "--trials", "1", "--epochs", str(EPOCHS), check=True)
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    args = ["replicate", "digits", "--replicates", "2", "--name", "reps", "--max-concurrent", "1"]
    process = start_ovatune(*args, home=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip

    def one_finished_one_past_its_checkpoint() -> bool:
        replicates = _runs(client, "replicate")
        finished = [r for r in replicates if r.info.status == "FINISHED"]
        mid = [r for r in replicates if r.info.status == "RUNNING"
               and len(client.get_metric_history(r.info.run_id, "train_loss")) >= 6]  # fmt: skip
        return len(finished) >= 1 and len(mid) >= 1

    try:
        deadline = time.time() + 300
        while not one_finished_one_past_its_checkpoint():
            assert time.time() < deadline and process.poll() is None, "the replicates ended before the kill"
            time.sleep(0.3)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the driver and everything it started, no clean-up
        process.wait()
    before = _runs(client, "replicate")
    finished_before = {r.info.run_id for r in before if r.info.status == "FINISHED"}

    # The resume is stopped in its wrap-up (SIGTERM, as a job scheduler stops it) after one checkpoint
    # is logged: it used to end on the spot, its parents RUNNING and the other checkpoints never logged.
    returncode, output, errors = sigterm_at_mark(
        "replicate checkpoint logged", ("replicate", "digits", "--resume", "--name", "reps"), home, tmp_path
    )  # fmt: skip
    assert returncode == 128 + signal.SIGTERM, output[-3000:] + errors[-3000:]
    assert "replicate set reps interrupted while logging checkpoints (SIGTERM)" in output
    assert "the checkpoints logged so far are kept" in output and "Traceback" not in output + errors
    parents = _runs(client, "replicates")
    assert len(parents) == 2 and all(p.data.tags.get("ovatune.outcome") == "interrupted" for p in parents)
    logged = [r for r in _runs(client, "replicate") if r.data.tags.get("ovatune.checkpoint_logged") == "true"]
    assert len(logged) == 1  # the one logged before the signal; the resume logs the other three
    command = output.strip().splitlines()[-1].strip()
    assert command == f"ovatune replicate digits --resume --name reps --home {home}"
    resumed = in_process(*shlex.split(command)[1:], check=True)
    # (Ray Tune may log a traceback of its own when a checkpoint the killed driver was rotating is gone)
    assert "2 replicates finished" in resumed.stdout and "ovatune: error" not in resumed.stderr

    replicates = _runs(client, "replicate")
    after = {r.info.run_id for r in replicates}
    assert finished_before <= after  # a replicate finished before the kill is kept, not trained again
    # A replicate running at the kill continues its run or, when the killed driver had not saved the
    # experiment with it yet, is handed out again and replaces its run: never a second run (below).
    numbers = sorted((r.data.tags["ovatune.loss"], r.data.tags["ovatune.trial_number"]) for r in replicates)
    assert numbers == [("ova_dm", "0"), ("ova_dm", "1"), ("softmax", "0"), ("softmax", "1")]  # none twice
    trials = {r.data.tags["ovatune.loss"]: r for r in _runs(client, "trial")}
    for run in replicates:
        assert run.info.status == "FINISHED" and run.data.tags["ovatune.outcome"] == "completed", run.info.run_name
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
        assert steps == list(range(1, EPOCHS + 1)), run.info.run_name  # every epoch once
        assert "checkpoint" in {a.path for a in client.list_artifacts(run.info.run_id)}
        assert run.data.tags["ovatune.checkpoint_logged"] == "true"
        number = int(run.data.tags["ovatune.trial_number"])
        assert run.data.params["seed"] == str(replicate_seed(0, number))  # the same seed for every loss
        champion = trials[run.data.tags["ovatune.loss"]].data.params
        for key in ("lr", "adam_beta1", "adam_eps", "data_seed", "epochs"):  # the champion's configuration
            assert run.data.params[key] == champion[key], (run.info.run_name, key)
    # a finished replicate keeps only its newest checkpoint, as a sweep's trial (tuning.retention)
    for run in replicates:
        (folder,) = (home / "ray_results" / "reps").glob(f"train_classifier_{run.data.tags['ovatune.ray_trial_id']}_*")
        (kept,) = folder.glob("checkpoint_*")
        assert json.loads((kept / "meta.json").read_text())["epoch"] == EPOCHS, kept
    parents = _runs(client, "replicates")
    assert {p.data.params["metric"] for p in parents} == {"val_accuracy"}  # what the champions were selected by
    assert sorted(p.info.run_name for p in parents) == sorted(f"{loss} replicates · {trials[loss].data.tags['ovatune.sweep']}"
                                                             for loss in ("softmax", "ova_dm"))  # fmt: skip
    assert all(p.info.status == "FINISHED" for p in parents)
    assert {p.data.tags["ovatune.champion"] for p in parents} == {
        "ovatune-digits-softmax v1",
        "ovatune-digits-ova_dm v1",
    }
    for parent in parents:
        children = [r for r in replicates if r.data.tags["mlflow.parentRunId"] == parent.info.run_id]
        assert (
            len(children) == 2
            and json.loads(parent.data.params["champion_config"])["loss"] == parent.data.tags["ovatune.loss"]
        )

    evaluated = in_process("evaluate", "digits", check=True)
    assert "over seeds: mean ± sd [95% interval] of softmax 2, ova_dm 2 replicates" in evaluated.stdout
    assert "What the 2 seeds × 360 test examples resolve" in evaluated.stdout
    report = (home / "reports" / "digits" / "report.md").read_text()
    assert "## Over seeds: replicates of each model's configuration" in report
    assert "### Differences between the losses, paired over seeds and test examples" in report
    for figure in ("reliability_over_seeds", "accuracy_vs_confidence_over_seeds", "shift_over_seeds"):
        assert (home / "reports" / "digits" / "figures" / f"{figure}.png").stat().st_size > 10_000, figure
    (evaluation,) = _runs(client, "evaluation")
    for loss in ("softmax", "ova_dm"):
        accuracies = [client.get_run(r.info.run_id).data.metrics["test_accuracy"] for r in replicates
                      if r.data.tags["ovatune.loss"] == loss]  # fmt: skip
        logged = evaluation.data.metrics[f"{loss}/replicates_test_accuracy_mean"]
        assert logged == pytest.approx(sum(accuracies) / 2, rel=1e-12)
        assert evaluation.data.metrics[f"{loss}/replicates_test_accuracy_ci_low"] <= logged
    assert "replicate_comparisons.json" in {a.path for a in client.list_artifacts(evaluation.info.run_id)}
