"""Promotion: the best trial of each loss becomes the registered model ``ovatune-<exp>-<loss>@champion``.

"Best" is the search space's validation metric at the trial's last epoch; errored, diverged and
scheduler-stopped-without-checkpoint trials never qualify. Ties (common on the toy problem, where
many trials reach 100% validation accuracy) go to the lower validation NLL.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import cloudpickle
import mlflow
import numpy as np
import torch
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

import trainables
from search_spaces import SearchSpace
from trainables.models import ProbabilityModel
from trainables.train import cached_dataset, load_classifier
from tuning.settings import Settings
from tuning.tracking import find_runs

log = logging.getLogger(__name__)

ALIAS = "champion"


def registered_name(experiment: str, loss: str) -> str:
    return f"ovatune-{experiment}-{loss}"


@dataclass
class Champion:
    """One promoted model."""

    loss: str
    model_name: str
    version: str
    run_id: str  # the trial's MLflow run, which holds the logged model
    trial_number: int
    metric: float
    config: dict[str, Any]


def _qualifies(result, metric: str) -> bool:
    if result.error is not None or result.checkpoint is None:
        return False
    value = result.metrics.get(metric)
    return not result.metrics.get("diverged") and value is not None and math.isfinite(value)


def best_results(results, space: SearchSpace) -> dict[str, Any]:
    """loss -> the best qualifying ``ray.tune.Result`` of that loss (losses with none are left out)."""
    sign = 1.0 if space.mode == "max" else -1.0
    best: dict[str, Any] = {}
    for result in results:
        if not _qualifies(result, space.metric):
            continue
        loss = result.config["method"]
        key = (sign * result.metrics[space.metric], -result.metrics.get("val_nll", math.inf))
        if loss not in best or key > best[loss][0]:
            best[loss] = (key, result)
    return {loss: result for loss, (_, result) in best.items()}


def promote(results, space: SearchSpace, sweep: str, experiment_id: str, settings: Settings) -> dict[str, Champion]:
    """Log and register each loss's best trial, and point the ``champion`` alias at it."""
    mlflow.set_tracking_uri(settings.tracking_uri)
    client = MlflowClient(settings.tracking_uri)
    champions = {}
    for loss, result in best_results(results, space).items():
        number = int(result.config["trial_number"])
        (trial_run,) = find_runs(client, experiment_id, kind="trial", sweep=sweep, loss=loss, trial_number=str(number))
        with result.checkpoint.as_directory() as directory:
            classifier, meta = load_classifier(directory)
        model = ProbabilityModel(classifier).eval()
        example = _input_example(meta)
        with torch.no_grad():
            signature = infer_signature(example, model(torch.from_numpy(example)).numpy())
        name = registered_name(space.name, loss)
        with mlflow.start_run(run_id=trial_run.info.run_id):
            info = mlflow.pytorch.log_model(
                model,
                name="model",
                signature=signature,
                input_example=example,
                registered_model_name=name,
                # A pickled module, not MLflow's default torch.export graph: evaluation needs the
                # classifier's embeddings and centres, and a fixed-shape export would pin the batch size.
                serialization_format="pickle",
                code_paths=[trainables.__path__[0]],  # the model classes travel with the model
                pip_requirements=[
                    f"torch=={torch.__version__.split('+')[0]}",
                    f"cloudpickle=={cloudpickle.__version__}",
                    f"numpy=={np.__version__}",
                ],
            )
        # Logging reopened the trial's run; its end time stays the trial's, not the promotion's.
        client.set_terminated(trial_run.info.run_id, status=trial_run.info.status, end_time=trial_run.info.end_time)
        version = str(info.registered_model_version)
        client.set_registered_model_alias(name, ALIAS, version)
        client.update_registered_model(
            name,
            description=f"{space.name}: the best {loss} model of each ovatune sweep ({space.metric}, {space.mode}).",
        )
        for key, value in {
            "sweep": sweep,
            "loss": loss,
            "trial_number": number,
            space.metric: result.metrics[space.metric],
        }.items():
            client.set_model_version_tag(name, version, key, str(value))
        champions[loss] = Champion(
            loss, name, version, trial_run.info.run_id, number, result.metrics[space.metric], dict(result.config)
        )
        log.info("promoted %s trial %d as %s version %s", loss, number, name, version)
    return champions


def _input_example(meta: dict[str, Any]) -> np.ndarray:
    """The first validation inputs of the trial's dataset, float32 (4, ...)."""
    return cached_dataset(meta["config"]).val.x[:4].numpy().astype(np.float32)


def finish_parents(client: MlflowClient, parents: dict[str, str], champions: dict[str, Champion], metric: str) -> None:
    """Close each parent run, recording its champion (or that none qualified)."""
    for loss, run_id in parents.items():
        champion = champions.get(loss)
        if champion is None:
            client.set_tag(run_id, "ovatune.champion", "none: every trial failed or diverged")
            client.set_terminated(run_id, status="FAILED")
            continue
        client.set_tag(
            run_id, "ovatune.champion", f"{champion.model_name} v{champion.version} (trial {champion.trial_number})"
        )
        client.log_metric(run_id, f"best_{metric}", champion.metric)
        client.set_terminated(run_id, status="FINISHED")
