"""``ovatune evaluate``: load each loss's champion, measure it, draw the figures, write the report.

The steps, each in its own module: ``tuning.fan_out`` measures every model in its own Ray task,
``evaluation.figures`` draws, ``tuning.report`` renders the markdown to
``<home>/reports/<experiment>/report.md``, ``tuning.evaluation_log`` records it all in one MLflow
run (and the model cards on the registered versions).

When a loss's evaluated version has replicates (``tuning.replicates``: its configuration trained
again with R seeds), they are measured too, and ``evaluation.replicate_summary`` gives every table
its mean ± sd and 95% interval over seeds (and test examples), and the comparisons between the
losses are paired over seeds and examples.

Champions may come from different sweeps (each stays until a later sweep beats it); the report
says which sweep each came from and why it is the champion. ``evaluate --sweep S`` measures the
versions sweep S registered instead (champions or not), without moving any alias, and writes
``<home>/reports/<experiment>/sweeps/<S>/report.md``.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
from mlflow.tracking import MlflowClient

from evaluation import figures
from evaluation.comparison import compare_losses, metric_intervals
from evaluation.replicate_summary import ReplicateSummary, summarize_replicates
from evaluation.runner import Evaluation
from search_spaces import SearchSpace
from serving.bundle import BUNDLE_ARTIFACT, SERVING_FILE
from trainables.trial_metrics import get_selection_metric
from tuning.champion import (
    NoneEvaluated,
    SelectedModel,
    champion_versions,
    common_selection_metric,
    nothing_to_evaluate,
    selection_metric,
)
from tuning.errors import one_line
from tuning.evaluation_log import log_evaluation
from tuning.fan_out import ModelKey, evaluate_models
from tuning.importance import importance_figure, importance_table, importances, searched_trials, slice_figure
from tuning.replicates import CHECKPOINT_ARTIFACT, replicate_runs
from tuning.report import EvaluatedModel, Measured, render_report
from tuning.settings import Settings
from tuning.timeline import mark
from tuning.tracking import TAG_TRIAL_NUMBER

SERVING_INFO = f"artifacts/{BUNDLE_ARTIFACT}/{SERVING_FILE}"  # in a registered version's files


@dataclass
class EvaluationReport:
    path: Path  # report.md
    run_id: str | None  # the MLflow evaluation run (None: not recorded, see evaluate_experiment)
    evaluations: dict[str, Evaluation]
    sweeps: dict[str, str]  # loss -> the sweep its evaluated model came from
    failures: dict[str, str]  # loss (or "<loss> replicate <r>") -> why it could not be evaluated (the others were)
    replicates: ReplicateSummary | None = None  # over the replicates of the evaluated versions, where they have


def find_selected_models(
    space: SearchSpace, client: MlflowClient, sweep: str | None = None
) -> tuple[dict[str, SelectedModel], dict[str, str]]:
    """(loss -> its selected model, loss -> why it cannot be evaluated) for every loss that has a
    ``champion`` alias (with ``sweep``: a version that sweep registered). Only each version's
    ``serving.json`` is read here: the model itself is loaded once, by the task that measures it
    (``tuning.fan_out``). A version whose artifacts are gone is named with the model's source, and
    the others are still evaluated.

    Raises:
        NoChampion: there is none to evaluate.
        NoneEvaluated: there are champions, and none could be read.
    """
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

    selected, failures = {}, {}
    for loss, version in champion_versions(client, space.name, sweep).items():
        name = version.name
        try:
            with tempfile.TemporaryDirectory() as scratch:
                repository = ModelsArtifactRepository(f"models:/{name}/{version.version}")
                info = json.loads(Path(repository.download_artifacts(SERVING_INFO, scratch)).read_text())
        except Exception as error:  # noqa: BLE001 - reported per loss, the others go on
            failures[loss] = f"{loss}: cannot load {name} v{version.version} (from {version.source}): {one_line(error)}"
            continue
        selected[loss] = SelectedModel(version, info)
    if not selected and failures:
        raise NoneEvaluated("no champion could be evaluated:\n  " + "\n  ".join(failures.values()))
    if not selected:
        raise nothing_to_evaluate(space.name, client.tracking_uri, sweep)
    return selected, failures


def evaluate_experiment(
    space: SearchSpace, settings: Settings, address: str | None = None, sweep: str | None = None, record: bool = True
) -> EvaluationReport:
    """Evaluate every champion of ``space`` (with ``sweep``: that sweep's registered models) and
    record the results (see module doc); ``record=False`` (a user who may only read the MLflow
    server): the report and its figures only, nothing written to MLflow. No alias moves."""
    started = time.time()  # the evaluation run spans the evaluation
    mlflow.set_tracking_uri(settings.tracking_uri)
    client = MlflowClient(settings.tracking_uri)
    champions, failures = find_selected_models(space, client, sweep)
    some_version = next(iter(champions.values())).version
    params = client.get_run(some_version.run_id).data.params
    data_dir = None if params.get("data_dir") in (None, "None") else params["data_dir"]

    versions = {loss: champion.version for loss, champion in champions.items()}
    experiment = client.get_experiment_by_name(space.name)
    replicated = replicate_runs(client, experiment.experiment_id, versions) if experiment else {}
    replicate_run_ids = {loss: {int(r.data.tags[TAG_TRIAL_NUMBER]): r.info.run_id for r in runs}
                         for loss, runs in replicated.items()}  # fmt: skip
    # Where each model's files are, resolved here once: a task that resolved models:/ or runs:/ itself
    # first paid 1.1 s for MLflow's store (its SQLAlchemy models), about a third of a digits task.
    models = {ModelKey(loss): client.get_model_version_download_uri(v.name, v.version) for loss, v in versions.items()}
    models |= {ModelKey(loss, int(run.data.tags[TAG_TRIAL_NUMBER])): f"{run.info.artifact_uri}/{CHECKPOINT_ARTIFACT}"
               for loss, runs in replicated.items() for run in runs}  # fmt: skip
    mark("champions found")
    measured, unmeasured = evaluate_models(space, settings, models, data_dir, int(params.get("data_seed", 0)), address)
    failures |= unmeasured
    mark("models measured")
    evaluations = {key.loss: ev for key, ev in measured.items() if key.replicate is None}
    replicates = {  # loss -> replicate number -> its Evaluation, in the losses' order
        loss: dict(sorted((key.replicate, ev) for key, ev in measured.items()
                          if key.loss == loss and key.replicate is not None))
        for loss in evaluations
    }  # fmt: skip
    replicates = {loss: by_number for loss, by_number in replicates.items() if len(by_number) >= 2}
    summary = summarize_replicates(replicates) if replicates else None
    if not evaluations:
        raise NoneEvaluated("no champion could be evaluated:\n  " + "\n  ".join(failures.values()))
    champions = {loss: champion for loss, champion in champions.items() if loss in evaluations}
    sweeps = {loss: champion.version.tags.get("sweep", "unknown") for loss, champion in champions.items()}

    out = settings.reports / space.name / ("sweeps" if sweep else "") / (sweep or "")
    (out / "figures").mkdir(parents=True, exist_ok=True)
    drawn = _draw_figures(evaluations, replicates)
    searched, importance = _importance(space, client, champions)
    if any(importance.values()):
        drawn["hyperparameter_importance"] = importance_figure(importance, space)
    if any(trials.values for trials in searched.values()):
        common = common_selection_metric([champion.version for champion in champions.values()], space)
        drawn["hyperparameter_slices"] = slice_figure(searched, space, common or "each model's selection metric")
    for name, fig in drawn.items():
        fig.savefig(out / "figures" / f"{name}.png", dpi=110)
        plt.close(fig)
    mark("figures drawn")
    labels = next(iter(evaluations.values())).test_labels  # every model is measured on the same test split
    intervals = {loss: metric_intervals(ev.test_probs, labels) for loss, ev in evaluations.items()}
    comparisons = compare_losses({loss: ev.test_probs for loss, ev in evaluations.items()}, labels)
    models = [  # one record per evaluated model: the selected ones, then the replicates that count
        EvaluatedModel(ModelKey(loss), evaluations[loss], champion.version, champion.info,
                       {k: v for k, v in client.get_run(champion.version.run_id).data.params.items() if k in space.ranges})
        for loss, champion in champions.items()
    ] + [
        EvaluatedModel(ModelKey(loss, number), ev, run_id=replicate_run_ids[loss][number])
        for loss, by_number in replicates.items() for number, ev in by_number.items()
    ]  # fmt: skip
    measured = Measured(space, sweep, models, intervals, comparisons, importance, summary)
    report = render_report(measured, list(drawn), importance_table(importance, space) if searched else None)
    path = out / "report.md"
    path.write_text(report)
    mark("report written")
    run_id = None
    if record:
        run_id = log_evaluation(settings, client, measured, out, started)
    return EvaluationReport(path, run_id, evaluations, sweeps, failures, summary)


def _importance(space: SearchSpace, client: MlflowClient, champions: dict[str, SelectedModel]) -> tuple[dict, dict]:
    """(loss -> its sweep's finished trials, loss -> their fANOVA importances or None), for each
    evaluated model, over the sweep that selected it and by the metric it was selected by."""
    experiment = client.get_experiment_by_name(space.name)
    if experiment is None or not space.ranges:
        return {}, {}
    searched, importance = {}, {}
    for loss, champion in champions.items():
        version = champion.version
        metric = selection_metric(version, space)
        trials = searched_trials(client, experiment.experiment_id, version.tags.get("sweep", ""), loss, space, metric)
        searched[loss] = trials
        importance[loss] = importances(trials, space, get_selection_metric(metric).mode)
    return searched, importance


def _draw_figures(
    evaluations: dict[str, Evaluation], replicates: dict[str, dict[int, Evaluation]]
) -> dict[str, plt.Figure]:
    """name -> figure: the selected models', then (``replicates``) the same over seeds. Every model was
    measured on the same sets, so the first evaluation says which the dataset has."""
    drawn = {"reliability": figures.reliability_diagrams(evaluations)}
    over_seeds = {loss: list(by_number.values()) for loss, by_number in replicates.items()}
    if over_seeds:
        drawn["reliability_over_seeds"] = figures.reliability_bands(over_seeds)
    first = next(iter(evaluations.values()))
    if first.ood:
        drawn["accuracy_vs_confidence"] = figures.accuracy_confidence_curves(evaluations)
        if over_seeds:
            drawn["accuracy_vs_confidence_over_seeds"] = figures.accuracy_confidence_bands(over_seeds)
        for name in first.ood:
            drawn[f"confidence_histograms_{name}"] = figures.confidence_histograms(evaluations, name)
    if first.shift:
        drawn["shift"] = figures.shift_boxplots(evaluations)
        if over_seeds:
            drawn["shift_over_seeds"] = figures.shift_boxplots(over_seeds)
    landscapes = {loss: ev.landscape for loss, ev in evaluations.items() if ev.landscape is not None}
    if landscapes:
        drawn["confidence_landscape"] = figures.confidence_landscape(landscapes)
    planes = {loss: ev.plane for loss, ev in evaluations.items() if ev.plane is not None}
    if planes:
        drawn["class_centres_pca"] = figures.class_centres_pca(planes)
    return drawn
