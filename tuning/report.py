"""``ovatune evaluate``: load each loss's champion, measure it, draw the figures, write the report.

Everything measured goes to one MLflow run per evaluation (``evaluation · <sweep>``, tag
``ovatune.kind=evaluation``): metrics named ``<loss>/<metric>``, the figures as PNG images and the
markdown report. The report is also written to ``<home>/reports/<experiment>/report.md``.

Champions may come from different sweeps (each stays until a later sweep beats it); the report
says which sweep each came from and why it is the champion. ``evaluate --sweep S`` measures the
versions sweep S registered instead (champions or not), without moving any alias, and writes
``<home>/reports/<experiment>/sweeps/<S>/report.md``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import torch
from mlflow.tracking import MlflowClient

from evaluation import figures
from evaluation.runner import Evaluation, evaluate_model
from search_spaces import SearchSpace
from trainables.data import load_dataset, take
from trainables.losses import LOSSES
from trainables.models import ProbabilityModel
from tuning.champion import CARD_FILE, CHAMPION, NoChampion, champion_versions, model_card
from tuning.settings import Settings, redact
from tuning.tracking import TAG_KIND, TAG_SWEEP, find_runs, get_or_create_experiment

log = logging.getLogger(__name__)
PCA_EXAMPLES = 2000


@dataclass
class EvaluationReport:
    path: Path  # report.md
    run_id: str  # the MLflow evaluation run
    evaluations: dict[str, Evaluation]
    sweeps: dict[str, str]  # loss -> the sweep its evaluated model came from
    failures: dict[str, str]  # loss -> why its champion could not be evaluated (the others were)


def load_champions(
    space: SearchSpace, client: MlflowClient, failures: dict[str, str], sweep: str | None = None
) -> dict[str, tuple]:
    """loss -> (model version, model: inputs → probabilities, serving info) for every loss that has a
    ``champion`` alias (with ``sweep``: a version that sweep registered). The registered pyfunc
    checks its files' hashes and loads weights only. A champion that cannot be loaded (its artifacts
    are gone or changed) goes to ``failures`` with the loss and the model's source, and the others
    are still loaded."""
    champions = {}
    for loss, version in champion_versions(client, space.name, sweep).items():
        name = version.name
        try:
            pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}").unwrap_python_model()
        except Exception as error:  # noqa: BLE001 - reported per loss, the others go on
            failures[loss] = (f"{loss}: cannot load {name} v{version.version} (from {version.source}): "
                              f"{type(error).__name__}: {_first_line(error)}")  # fmt: skip
            continue
        champions[loss] = (version, ProbabilityModel(pyfunc.model.classifier).eval(), pyfunc.info)
    if not champions and failures:
        raise NoChampion("no champion could be evaluated:\n  " + "\n  ".join(failures.values()))
    if not champions and sweep is not None:
        raise NoChampion(
            f"sweep {sweep!r} registered no model of {space.name!r} in {redact(client.tracking_uri)} "
            "(it does not exist, no trial qualified, it is unfinished or it ran with --promote never); "
            f"its trials are in the MLflow UI, and `ovatune evaluate {space.name}` measures the champions"
        )
    if not champions:
        raise NoChampion(
            f"no registered model of {space.name!r} has the alias {CHAMPION!r} in {redact(client.tracking_uri)}; "
            f"run `ovatune sweep {space.name}` (or `ovatune run {space.name}`) first"
        )
    return champions


def _evaluate_champion(tracking_uri: str, model_uri: str, dataset: str, data_dir, data_seed: int, loss: str):
    """One champion's measurements, where it runs: on the GPU if the task was given one."""
    import torch

    from tuning.tracking import quiet_mlflow_logs

    quiet_mlflow_logs()
    mlflow.set_tracking_uri(tracking_uri)
    pyfunc = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    from ray.experimental.tqdm_ray import tqdm  # a progress bar that prints from inside a Ray task

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = ProbabilityModel(pyfunc.model.classifier).to(device).eval()
    data = load_dataset(dataset, data_dir, data_seed)
    if data.shifted is None:
        return evaluate_model(model, data, loss)
    bar = tqdm(total=5 * len(data.shift_corruptions), desc=f"{loss}: shifted test sets")
    try:
        return evaluate_model(model, data, loss, on_shifted_set=lambda corruption, intensity: bar.update(1))
    finally:
        bar.close()


def evaluate_champions(
    space: SearchSpace,
    settings: Settings,
    versions: dict,
    data_dir,
    data_seed: int,
    failures: dict[str, str],
    address: str | None = None,
) -> dict:
    """loss -> ``Evaluation`` of ``versions`` (loss -> ``ModelVersion``), each measured in its own Ray task (one GPU each when the
    cluster has GPUs, else one CPU), all at once as the cluster allows. A champion whose task fails
    goes to ``failures`` (loss -> message); the others are still measured."""
    import ray

    from tuning.cluster import evaluation_gpus
    from tuning.sweep import init_ray

    init_ray(address)  # no-op when a sweep already connected this process
    gpus = evaluation_gpus(on_cluster=address is not None)  # on a cluster: a GPU node it can launch counts
    task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=1)(_evaluate_champion)
    futures = {
        loss: task.remote(
            settings.tracking_uri, f"models:/{v.name}/{v.version}", space.dataset, data_dir, data_seed, loss
        )  # fmt: skip
        for loss, v in versions.items()
    }
    print(f"evaluating {', '.join(versions)} as Ray tasks ({'1 GPU' if gpus else '1 CPU'} each) ...", flush=True)
    evaluations = {}
    for loss, future in futures.items():
        try:
            evaluations[loss] = ray.get(future)
        except Exception as error:  # noqa: BLE001 - one champion's failure is its own
            cause = getattr(error, "cause", None) or error  # a Ray task's error carries the original
            failures[loss] = f"{loss}: evaluation failed: {type(cause).__name__}: {_first_line(cause)}"
    return evaluations


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


def evaluate_experiment(
    space: SearchSpace, settings: Settings, address: str | None = None, sweep: str | None = None
) -> EvaluationReport:
    """Evaluate every champion of ``space`` (with ``sweep``: that sweep's registered models) and
    record the results (see module doc). No alias moves."""
    mlflow.set_tracking_uri(settings.tracking_uri)
    client = MlflowClient(settings.tracking_uri)
    failures: dict[str, str] = {}
    champions = load_champions(space, client, failures, sweep)
    some_version = next(iter(champions.values()))[0]
    params = client.get_run(some_version.run_id).data.params
    data_dir = None if params.get("data_dir") in (None, "None") else params["data_dir"]
    data = load_dataset(space.dataset, data_dir, int(params.get("data_seed", 0)))

    versions = {loss: version for loss, (version, _, _) in champions.items()}
    evaluations = evaluate_champions(
        space, settings, versions, data_dir, int(params.get("data_seed", 0)), failures, address
    )
    if not evaluations:
        raise NoChampion("no champion could be evaluated:\n  " + "\n  ".join(failures.values()))
    champions = {loss: champion for loss, champion in champions.items() if loss in evaluations}
    sweeps = {loss: version.tags.get("sweep", "unknown") for loss, (version, _, _) in champions.items()}
    distinct = sorted(set(sweeps.values()))
    label = distinct[0] if len(distinct) == 1 else f"champions of {len(distinct)} sweeps"

    out = settings.reports / space.name / ("sweeps" if sweep else "") / (sweep or "")
    (out / "figures").mkdir(parents=True, exist_ok=True)
    drawn = _draw_figures(evaluations, {loss: m for loss, (_, m, _) in champions.items()}, data)
    for name, fig in drawn.items():
        fig.savefig(out / "figures" / f"{name}.png", dpi=110)
        plt.close(fig)
    hyperparameters = {
        loss: {k: v for k, v in client.get_run(version.run_id).data.params.items() if k in space.ranges}
        for loss, (version, _, _) in champions.items()
    }
    report = render_report(space, sweep, champions, hyperparameters, evaluations, list(drawn))
    path = out / "report.md"
    path.write_text(report)

    experiment_id = get_or_create_experiment(client, space.name, space.description, settings)
    tags = {
        TAG_KIND: "evaluation",
        TAG_SWEEP: ",".join(distinct),
        "ovatune.evaluated": "sweep" if sweep else "champions",
    }
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"evaluation · {label}", tags=tags) as run:
        mlflow.log_params({f"{loss}_model": f"{v.name} v{v.version}" for loss, (v, _, _) in champions.items()})
        mlflow.log_metrics(flat_metrics(evaluations))
        mlflow.log_artifacts(str(out / "figures"), artifact_path="figures")
        mlflow.log_artifact(str(path))
        mlflow.log_dict(summary_rows(evaluations), "summary.json")
    # Each champion's model card: the registered version's description (the MLflow UI renders it) and
    # model_card.md beside the trial's model; `ovatune export` ships it with every export.
    for loss, (version, _, info) in champions.items():
        card = model_card(space, loss, version, info, hyperparameters[loss], evaluations[loss])
        client.update_model_version(version.name, version.version, description=card)
        client.log_text(version.run_id, card, CARD_FILE)
    # Each model's own sweep's parent run shows its test metrics next to the search results.
    for loss, ev in evaluations.items():
        for parent in find_runs(client, experiment_id, kind="parent", sweep=sweeps[loss], loss=loss):
            for key, value in ev.test.items():
                client.log_metric(parent.info.run_id, f"test_{key}", value)
    return EvaluationReport(path, run.info.run_id, evaluations, sweeps, failures)


def _draw_figures(evaluations: dict[str, Evaluation], models: dict, data) -> dict[str, plt.Figure]:
    drawn = {"reliability": figures.reliability_diagrams(evaluations)}
    if data.ood:
        drawn["accuracy_vs_confidence"] = figures.accuracy_confidence_curves(evaluations)
        for name in data.ood:
            drawn[f"confidence_histograms_{name}"] = figures.confidence_histograms(evaluations, name)
    if data.shifted is not None:
        drawn["shift"] = figures.shift_boxplots(evaluations)
    if data.input_shape == (2,):
        drawn["confidence_landscape"] = figures.confidence_landscape(models, data.train.x.numpy())
    distance = {loss: m.classifier for loss, m in models.items() if LOSSES[loss].is_distance}
    if distance:
        # At most 2000 training examples: the plot needs no more, and a large set would not fit in one batch.
        index = torch.arange(0, len(data.train), max(1, len(data.train) // PCA_EXAMPLES))[:PCA_EXAMPLES]
        sample = take(data.train.x, index)  # (n, ...), spread evenly over the split
        drawn["class_centres_pca"] = figures.class_centres_pca(distance, sample, data.train.y[index].numpy())
    return drawn


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


def summary_rows(evaluations: dict[str, Evaluation]) -> list[dict]:
    """One row per loss: the numbers the CLI prints and the report's first table holds."""
    rows = []
    for loss, ev in evaluations.items():
        row = {"loss": loss, "train_accuracy": ev.train_accuracy, **{f"test_{k}": v for k, v in ev.test.items()}}
        for name, values in ev.ood.items():
            row[f"{name}_auroc"] = values["auroc"]
            row[f"{name}_mean_confidence"] = values["mean_confidence"]
        rows.append(row)
    return rows


def format_table(rows: list[dict], columns: list[str], headers: list[str]) -> str:
    """A markdown table (also readable as plain text)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        cells = [row[c] if isinstance(row[c], str) else f"{row[c]:.4f}" for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_table(evaluations: dict[str, Evaluation]) -> str:
    """The compact comparison printed at the end of ``ovatune run``.

    Per OOD set it shows the AUROC and the mean confidence there: on the toy problem's far rings
    the latter is the paper's Figure 1 as numbers.
    """
    ood_names = list(next(iter(evaluations.values())).ood)
    columns = ["loss", "test_accuracy", "test_ece", "test_nll", "train_accuracy"]
    headers = ["loss", "test acc", "ECE", "NLL", "train acc"]
    for name in ood_names:
        columns += [f"{name}_auroc", f"{name}_mean_confidence"]
        headers += [f"AUROC {name}", f"conf {name}"]
    return format_table(summary_rows(evaluations), columns, headers)


def accuracy_paper_table(evaluations: dict[str, Evaluation]) -> str:
    """Test accuracy (%) and ECE per loss, laid out as the paper's Table S1."""
    rows = [{"loss": LOSSES[loss].title, "accuracy": f"{100 * ev.test['accuracy']:.2f}", "ece": f"{ev.test['ece']:.3f}"}
            for loss, ev in evaluations.items()]  # fmt: skip
    return format_table(rows, ["loss", "accuracy", "ece"], ["Loss function", "Test Accuracy", "Test ECE"])


def ood_paper_table(dataset: str, evaluations: dict[str, Evaluation]) -> str:
    """AUROC / AUPRC per OOD set and loss, laid out as the paper's Tables S2 and S3."""
    ood_names = list(next(iter(evaluations.values())).ood)
    rows = [{"d_in": dataset, "loss": LOSSES[loss].title,
             **{n: f"{ev.ood[n]['auroc']:.4f} / {ev.ood[n]['auprc']:.4f}" for n in ood_names}}
            for loss, ev in evaluations.items()]  # fmt: skip
    headers = ["D_in", "Loss function"] + [f"D_ood = {n}: AUROC / AUPRC" for n in ood_names]
    return format_table(rows, ["d_in", "loss", *ood_names], headers)


def shift_table(evaluations: dict[str, Evaluation]) -> str:
    """One row per (corruption, loss): accuracy / ECE at each intensity, the numbers behind the box plots."""
    corruptions = dict.fromkeys(r["corruption"] for ev in evaluations.values() for r in ev.shift)
    rows = []
    for corruption in corruptions:
        for loss, ev in evaluations.items():
            at = {r["intensity"]: r for r in ev.shift if r["corruption"] == corruption}
            cells = {str(i): f"{at[i]['accuracy']:.3f} / {at[i]['ece']:.3f}" for i in range(1, 6)}
            rows.append({"corruption": corruption, "loss": loss, **cells})
    intensities = [str(i) for i in range(1, 6)]
    return format_table(
        rows, ["corruption", "loss", *intensities], ["corruption", "loss"] + [f"intensity {i}" for i in intensities]
    )


def render_report(
    space, sweep, champions, hyperparameters, evaluations: dict[str, Evaluation], figure_names: list[str]
) -> str:
    """The markdown report: the models (champions, or with ``sweep`` that sweep's best), tables,
    then the figures."""
    if sweep is None:
        what = (f"The champion of each loss: the best version so far by validation `{space.metric}` "
                f"({space.mode}); champions may come from different sweeps.")  # fmt: skip
    else:
        what = (f"The best model of each loss in sweep `{sweep}` (by validation `{space.metric}`, {space.mode}), "
                "champions or not: evaluating them moved no alias.")  # fmt: skip
    lines = [
        f"# ovatune report: {space.name}" + (f", sweep {sweep}" if sweep else ""),
        "",
        space.description,
        "",
        what,
        "",
        "## Champions" if sweep is None else "## Models",
        "",
        f"| loss | registered model | sweep | trial | validation {space.metric} | promotion | hyperparameters |",
        "|---|---|---|---|---|---|---|",
    ]
    for loss, (version, _, _) in champions.items():
        chosen = ", ".join(f"{k}={float(v):.4g}" for k, v in sorted(hyperparameters[loss].items()))
        metric = float(version.tags.get(space.metric, "nan"))
        lines.append(
            f"| {loss} | `{version.name}` v{version.version} | `{version.tags.get('sweep')}` | "
            f"{version.tags.get('trial_number')} | {metric:.4f} | {version.tags.get('promotion', '')} | {chosen} |"
        )
    lines += [
        "",
        "## In distribution (test split)",
        "",
        "NLL and Brier are computed on the probabilities renormalised to sum to 1 (one-vs-all "
        "probabilities need not); accuracy, ECE (15 bins) and confidence use them as they are.",
        "",
        format_table(
            summary_rows(evaluations),
            ["loss", "train_accuracy", "test_accuracy", "test_ece", "test_nll", "test_brier", "test_mean_confidence"],
            ["loss", "train acc", "test acc", "ECE", "NLL", "Brier", "mean confidence"],
        ),  # fmt: skip
    ]
    lines += ["", "As the paper's Table S1 (accuracy in %):", "", accuracy_paper_table(evaluations)]
    ood_names = list(next(iter(evaluations.values())).ood)
    if ood_names:
        lines += ["", "## Out of distribution", "", "OOD is the positive class, scored by 1 − max_k p_k.", ""]
        rows = [{"loss": loss, **{f"{n}_{k}": ev.ood[n][k] for n in ood_names for k in ("auroc", "auprc", "mean_confidence")}}
                for loss, ev in evaluations.items()]  # fmt: skip
        columns = [f"{n}_{k}" for n in ood_names for k in ("auroc", "auprc", "mean_confidence")]
        headers = [f"{n} {k.replace('_', ' ')}" for n in ood_names for k in ("AUROC", "AUPRC", "mean_confidence")]
        lines.append(format_table(rows, ["loss"] + columns, ["loss"] + headers))
        lines += ["", "As the paper's Tables S2/S3:", "", ood_paper_table(space.dataset, evaluations)]
    if any(ev.shift for ev in evaluations.values()):
        lines += ["", "## Under shift (mean over corruptions)", ""]
        rows = []
        for loss, ev in evaluations.items():
            row = {"loss": loss}
            for level in range(6):
                at = [r for r in ev.shift if r["intensity"] == level]
                row[f"acc{level}"] = float(np.mean([r["accuracy"] for r in at]))
                row[f"ece{level}"] = float(np.mean([r["ece"] for r in at]))
            rows.append(row)
        lines.append(format_table(rows, ["loss"] + [f"acc{i}" for i in range(6)] + [f"ece{i}" for i in range(6)],
                                  ["loss"] + [f"acc {i or 'test'}" for i in range(6)] + [f"ECE {i or 'test'}" for i in range(6)]))  # fmt: skip
        lines += ["", "### Every corruption (accuracy / ECE at intensities 1-5)", "", shift_table(evaluations)]
    lines += ["", "## Figures", ""]
    lines += [f"### {name.replace('_', ' ')}\n\n![{name}](figures/{name}.png)\n" for name in figure_names]
    return "\n".join(lines) + "\n"
