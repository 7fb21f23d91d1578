"""Where an evaluation's results go in MLflow: one evaluation run, the model cards, the sweeps' parent runs.

The evaluation run (``evaluation · <sweep>``, tag ``ovatune.kind=evaluation``) holds every number as
a metric ``<loss>/<what>``, the figures as PNG images, the markdown report and ``summary.json``.
Each evaluated version gets its model card as its description (the MLflow UI renders it) and as
``model_card.md`` beside the trial's logged model; each model's own sweep's parent run gets its
test metrics, next to the search results.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from mlflow.tracking.context.registry import resolve_tags

from evaluation.comparison import Comparison
from evaluation.runner import Evaluation
from tuning.champion import CARD_FILE, model_card
from tuning.report import Measured, summary_rows
from tuning.settings import Settings
from tuning.tracking import TAG_KIND, TAG_SWEEP, find_runs, get_or_create_experiment, log_provenance


def log_evaluation(
    settings: Settings, client: MlflowClient, measured: Measured, report_dir: Path, started: float
) -> str:
    """Record one evaluation (see the module doc; ``report_dir`` holds ``report.md`` and
    ``figures/*.png``; ``started``: when the evaluation began, seconds since the epoch); returns the
    evaluation run's id. The run spans the evaluation, from ``started`` to its recording's end.

    Each number is a metric ``<loss>/<what>``: the importances ``<loss>/importance_<name>``, the test
    intervals ``<loss>/test_<metric>_ci_low|high``, the summary over seeds
    ``<loss>/replicates_test_<metric>_mean|sd|ci_low|ci_high``; the comparisons are
    ``comparisons.json`` and ``replicate_comparisons.json``; each replicate's run gets its own test
    metrics.
    """
    mlflow.set_tracking_uri(settings.tracking_uri)  # the fluent calls below write to the run they start
    space, sweep, models = measured.space, measured.sweep, measured.selected
    evaluations, importance, intervals = measured.evaluations, measured.importance, measured.intervals
    comparisons, replicates = measured.comparisons, measured.summary
    sweeps = {loss: model.version.tags.get("sweep", "unknown") for loss, model in models.items()}
    distinct = sorted(set(sweeps.values()))
    label = distinct[0] if len(distinct) == 1 else f"champions of {len(distinct)} sweeps"
    experiment_id = get_or_create_experiment(client, space.name, space.description, settings)
    tags = {
        TAG_KIND: "evaluation",
        TAG_SWEEP: ",".join(distinct),
        "ovatune.evaluated": "sweep" if sweep else "champions",
    }
    # Made now with the evaluation's own start time, so that it spans the evaluation as trial and
    # parent runs span theirs (made with the recording's start, it lasted a fraction of a second in
    # the UI); with the tags MLflow's fluent start_run resolves (user, source; mlflow is pinned).
    opened = client.create_run(experiment_id, start_time=int(started * 1000), tags=resolve_tags(tags),
                               run_name=f"evaluation · {label}")  # fmt: skip
    with mlflow.start_run(run_id=opened.info.run_id) as run:
        mlflow.log_params({f"{loss}_model": f"{m.version.name} v{m.version.version}" for loss, m in models.items()})
        mlflow.log_metrics(flat_metrics(evaluations))
        for loss, by_metric in (intervals or {}).items():
            for metric, interval in by_metric.items():
                mlflow.log_metrics({f"{loss}/test_{metric}_ci_low": interval.low,
                                    f"{loss}/test_{metric}_ci_high": interval.high})  # fmt: skip
        if comparisons:
            mlflow.log_dict(_records(comparisons), "comparisons.json")
        if replicates is not None:
            mlflow.log_params({f"{loss}_replicates": r for loss, r in replicates.replicates.items()})
            for loss, by_metric in replicates.test.items():
                for metric, spread in by_metric.items():
                    key = f"{loss}/replicates_test_{metric}"
                    mlflow.log_metrics({f"{key}_mean": spread.mean, f"{key}_sd": spread.sd,
                                        f"{key}_ci_low": spread.interval.low, f"{key}_ci_high": spread.interval.high})  # fmt: skip
            mlflow.log_dict(_records(replicates.comparisons), "replicate_comparisons.json")
        for loss, scores in (importance or {}).items():
            mlflow.log_metrics({f"{loss}/importance_{name}": value for name, value in (scores or {}).items()})
        mlflow.log_artifacts(str(report_dir / "figures"), artifact_path="figures")
        mlflow.log_artifact(str(report_dir / "report.md"))
        mlflow.log_dict(summary_rows(evaluations), "summary.json")
        log_provenance(client, run.info.run_id, [r for ev in evaluations.values() for r in ev.inputs])
    for loss, model in models.items():
        version = model.version
        card = model_card(space, loss, version, model.info, model.hyperparameters, model.evaluation)
        client.update_model_version(version.name, version.version, description=card)
        client.log_text(version.run_id, card, CARD_FILE)
    for replicate in (m for m in measured.models if m.run_id):
        now = int(time.time() * 1000)
        ev = replicate.evaluation
        client.log_batch(replicate.run_id, metrics=[Metric(f"test_{k}", v, now, 0) for k, v in ev.test.items()])
        log_provenance(client, replicate.run_id, ev.inputs)
    for loss, ev in evaluations.items():
        for parent in find_runs(client, experiment_id, kind="parent", sweep=sweeps[loss], loss=loss):
            for key, value in ev.test.items():
                client.log_metric(parent.info.run_id, f"test_{key}", value)
    return run.info.run_id


def flat_metrics(evaluations: dict[str, Evaluation]) -> dict[str, float]:
    """Every number as an MLflow metric ``<loss>/<what>``."""
    metrics = {}
    for loss, ev in evaluations.items():
        metrics |= {f"{loss}/test_{k}": v for k, v in ev.test.items()}
        metrics[f"{loss}/train_accuracy"] = ev.train_accuracy
        for name, values in ev.ood.items():
            metrics |= {f"{loss}/ood_{name}_{k}": v for k, v in values.items()}
        for row in ev.shift:
            if row["intensity"] > 0:
                key = f"{loss}/shift_{row['corruption']}_{row['intensity']}"
                metrics |= {f"{key}_accuracy": row["accuracy"], f"{key}_ece": row["ece"]}
    return metrics


def _records(comparisons: list[Comparison]) -> list[dict]:
    """The comparisons as JSON records: metric, the pair, the difference's interval, the better loss."""
    return [{"metric": c.metric, "a": c.a, "b": c.b, **dataclasses.asdict(c.difference), "better": c.better}
            for c in comparisons]  # fmt: skip
