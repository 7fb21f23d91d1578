"""Promotion: the best trial of each loss becomes the registered model ``ovatune-<exp>-<loss>@champion``.

"Best" is the search space's validation metric at the trial's last epoch; errored, diverged and
scheduler-stopped-without-checkpoint trials never qualify. Ties (common on the toy problem, where
many trials reach 100% validation accuracy) go to the lower validation NLL.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

import trainables
from search_spaces import SearchSpace
from trainables.data import input_batches
from trainables.methods import METHODS
from trainables.serving import (
    KEEP_FRACTION,
    OUTPUTS,
    ServingModel,
    choose_threshold,
    raw_inputs,
    write_serving_bundle,
)
from trainables.train import cached_dataset, load_classifier, predict_probabilities
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
    """Log and register each loss's best trial, and point the ``champion`` alias at it.

    The registered model is an MLflow pyfunc from code (``trainables/pyfunc_model.py``) around a
    bundle of the weights, the checkpoint's metadata and ``serving.json`` (classes, method,
    preprocessing, the none-of-the-above threshold chosen on the validation split, SHA-256 of each
    file): raw inputs in; probabilities, confidence, prediction and none_of_the_above out.
    """
    mlflow.set_tracking_uri(settings.tracking_uri)
    client = MlflowClient(settings.tracking_uri)
    champions = {}
    for loss, result in best_results(results, space).items():
        number = int(result.config["trial_number"])
        (trial_run,) = find_runs(client, experiment_id, kind="trial", sweep=sweep, loss=loss, trial_number=str(number))
        with result.checkpoint.as_directory() as directory:
            classifier, meta = load_classifier(directory)
        data = cached_dataset(meta["config"])
        confidence = predict_probabilities(classifier, data.val.x).max(axis=1)  # batched: any model size
        threshold = choose_threshold(confidence)
        raw = (
            raw_inputs(data.preprocessing, next(input_batches(data.val.x, 4))).numpy().astype(np.float32)
        )  # (4, *raw shape)
        # The signature takes one flattened raw input per row: a DataFrame row, an array row or a JSON list.
        example = raw.reshape(len(raw), -1)
        if data.tokenizer:  # a text model is registered to take text: it tokenizes as training did
            from trainables.data.clinc import load_tokenizer

            tokenizer = load_tokenizer(data.tokenizer)
            example = pd.DataFrame({"text": [tokenizer.decode([int(i) for i in ids]) for ids in raw]})
        name = registered_name(space.name, loss)
        with tempfile.TemporaryDirectory() as scratch:
            bundle = write_serving_bundle(
                Path(scratch) / "bundle",
                classifier,
                meta,
                experiment=space.name,
                dataset=space.dataset,
                loss=loss,
                method_title=METHODS[loss].title,
                class_names=meta["class_names"],
                preprocessing=data.preprocessing,
                raw_input_shape=list(raw.shape[1:]),
                threshold=threshold,
                threshold_rule=f"the largest confidence threshold that keeps {KEEP_FRACTION:.0%} of the "
                f"{len(confidence)} in-distribution validation examples",
                validation_kept=float((confidence >= threshold).mean()),
                sweep=sweep,
                trial_number=number,
            )
            serving = ServingModel(classifier, data.preprocessing, threshold).eval()
            with torch.no_grad():
                outputs = dict(zip(OUTPUTS, (o.numpy() for o in serving(torch.from_numpy(raw)))))
            with mlflow.start_run(run_id=trial_run.info.run_id):
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=str(Path(trainables.__path__[0]) / "pyfunc_model.py"),
                    artifacts={"bundle": str(bundle)},
                    code_paths=[trainables.__path__[0]],  # the model classes travel with the model
                    signature=infer_signature(example, outputs),
                    input_example=example,
                    registered_model_name=name,
                    pip_requirements=[
                        f"torch=={torch.__version__.split('+')[0]}",
                        f"numpy=={np.__version__}",
                        f"mlflow=={mlflow.__version__}",
                    ],
                )
        # Logging reopened the trial's run; its end time stays the trial's, not the promotion's.
        client.set_terminated(trial_run.info.run_id, status=trial_run.info.status, end_time=trial_run.info.end_time)
        version = str(info.registered_model_version)
        client.set_registered_model_alias(name, ALIAS, version)
        client.update_registered_model(
            name,
            description=f"{space.name}: the best {loss} ({METHODS[loss].title}) model of each ovatune sweep, "
            f"by {space.metric} ({space.mode}). Raw inputs in; probabilities, confidence, prediction and "
            f"none_of_the_above out. The alias `{ALIAS}` points at the current best.",
        )
        for key, value in {
            "sweep": sweep,
            "loss": loss,
            "trial_number": number,
            space.metric: result.metrics[space.metric],
            "none_of_the_above_threshold": f"{threshold:.6g}",
        }.items():
            client.set_model_version_tag(name, version, key, str(value))
        champions[loss] = Champion(
            loss, name, version, trial_run.info.run_id, number, result.metrics[space.metric], dict(result.config)
        )
        log.info("promoted %s trial %d as %s version %s", loss, number, name, version)
    return champions


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
