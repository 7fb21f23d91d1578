"""``tuning.evaluation_log``: where one evaluation's results go in a real MLflow store: one run with
every number, figure and the report, each model card on its version and beside its trial's model,
each sweep's parent run its test metrics."""

import time

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from evaluation.comparison import compare_losses, metric_intervals
from evaluation.metrics import classification_metrics
from evaluation.runner import Evaluation
from search_spaces import get_space
from tuning.champion import CARD_FILE
from tuning.evaluation_log import flat_metrics, log_evaluation
from tuning.fan_out import ModelKey
from tuning.report import EvaluatedModel, Measured
from tuning.settings import resolve_settings
from tuning.tracking import TAG_KIND, TAG_SWEEP, get_or_create_experiment, parent_runs

K = 3


def _evaluation(loss: str, seed: int) -> Evaluation:
    labels = np.random.default_rng(0).integers(0, K, 200)  # every model is measured on the same test split
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(K), size=200) + 2.0 * np.eye(K)[labels]
    probs /= probs.sum(axis=1, keepdims=True)
    ood = rng.dirichlet(np.ones(K), size=50)
    shift = [{"corruption": "fog", "intensity": i, "accuracy": 0.9 - 0.1 * i, "ece": 0.02 * i} for i in range(3)]
    return Evaluation(loss=loss, test=classification_metrics(probs, labels), train_accuracy=0.97, test_probs=probs,
                      test_labels=labels, ood_probs={"noise": ood},
                      ood={"noise": {"auroc": 0.8, "auprc": 0.7, "mean_confidence": 0.5}}, shift=shift)  # fmt: skip


def test_flat_metrics_names_every_number_by_loss_and_what_it_is():
    metrics = flat_metrics({"dm": _evaluation("dm", 0)})
    assert metrics["dm/train_accuracy"] == 0.97 and metrics["dm/ood_noise_auroc"] == 0.8
    assert {f"dm/test_{m}" for m in ("accuracy", "ece", "nll", "brier", "mean_confidence")} <= set(metrics)
    assert metrics["dm/shift_fog_2_accuracy"] == pytest.approx(0.7) and "dm/shift_fog_0_accuracy" not in metrics


def test_an_evaluation_is_one_run_and_each_version_gets_its_card_and_each_parent_its_test_metrics(tmp_path):
    settings = resolve_settings(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = MlflowClient(settings.tracking_uri)
    space = get_space("digits")
    experiment_id = get_or_create_experiment(client, space.name, space.description, settings)
    parents = parent_runs(client, experiment_id, "s1", ["softmax", "dm"], {})
    models, evaluations = {}, {}
    for seed, loss in enumerate(("softmax", "dm")):
        trial = client.create_run(experiment_id, tags={TAG_KIND: "trial", TAG_SWEEP: "s1"}).info.run_id
        name = f"ovatune-digits-{loss}"
        client.create_registered_model(name)
        version = client.create_model_version(
            name, source=(tmp_path / loss).as_uri(), run_id=trial, tags={"sweep": "s1"}
        )
        info = {"sweep": "s1", "trial_number": seed, "dataset": "digits", "class_names": ["a", "b", "c"],
                "raw_input_shape": [8, 8, 1], "preprocessing": "digits", "threshold": 0.5,
                "threshold_rule": "the 5% least confident", "validation_kept": 0.95}  # fmt: skip
        evaluations[loss] = _evaluation(loss, seed)
        models[loss] = EvaluatedModel(ModelKey(loss), evaluations[loss], version, info, {"lr": "0.1"})
    labels = evaluations["softmax"].test_labels
    report_dir = tmp_path / "report"
    (report_dir / "figures").mkdir(parents=True)
    (report_dir / "figures" / "reliability.png").write_bytes(b"\x89PNG not really")
    (report_dir / "report.md").write_text("# the report\n")
    replicates = [  # two replicates of dm, each with its own run
        EvaluatedModel(
            ModelKey("dm", n), _evaluation("dm", 10 + n), run_id=client.create_run(experiment_id).info.run_id
        )
        for n in (0, 1)
    ]
    measured = Measured(
        space, None, [*models.values(), *replicates],
        {loss: metric_intervals(ev.test_probs, labels) for loss, ev in evaluations.items()},
        compare_losses({loss: ev.test_probs for loss, ev in evaluations.items()}, labels),
        {"softmax": {"lr": 0.7}, "dm": None},
    )  # fmt: skip

    before = mlflow.get_tracking_uri()
    try:
        started = time.time() - 14.0  # an evaluation that began 14 s ago
        run_id = log_evaluation(settings, client, measured, report_dir, started)
    finally:
        mlflow.set_tracking_uri(before)  # it sets the process's own: later tests of this worker name theirs

    run = client.get_run(run_id)
    assert run.info.run_name == "evaluation · s1" and run.data.tags[TAG_KIND] == "evaluation"
    # the run spans the evaluation it records, from its start to the end of its recording
    assert run.info.start_time == int(started * 1000) and run.info.end_time - run.info.start_time >= 14_000
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.user"]  # and MLflow's own tags, as before
    assert run.data.params == {"softmax_model": "ovatune-digits-softmax v1", "dm_model": "ovatune-digits-dm v1"}
    assert run.data.metrics["dm/test_accuracy"] == pytest.approx(evaluations["dm"].test["accuracy"])
    assert run.data.metrics["softmax/importance_lr"] == 0.7
    low, high = run.data.metrics["dm/test_ece_ci_low"], run.data.metrics["dm/test_ece_ci_high"]
    assert low <= evaluations["dm"].test["ece"] <= high
    artifacts = {a.path for a in client.list_artifacts(run_id)} | {
        a.path for a in client.list_artifacts(run_id, "figures")
    }
    assert {"report.md", "summary.json", "comparisons.json", "figures/reliability.png"} <= artifacts
    for loss, model in models.items():
        card = client.get_model_version(model.version.name, "1").description
        assert card.startswith(f"# Model card: ovatune-digits-{loss} v1") and "- Test: accuracy" in card
        assert CARD_FILE in {a.path for a in client.list_artifacts(model.version.run_id)}
        parent = client.get_run(parents[loss])
        assert parent.data.metrics["test_accuracy"] == pytest.approx(evaluations[loss].test["accuracy"])
    for replicate in replicates:  # each replicate's run gets its own test metrics
        metrics = client.get_run(replicate.run_id).data.metrics
        assert metrics["test_accuracy"] == pytest.approx(replicate.evaluation.test["accuracy"])
