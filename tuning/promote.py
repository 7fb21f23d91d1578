"""Promotion: each sweep registers its best trial per loss as a version of the loss's model.

The policy (aliases, when ``champion`` moves, the lookups) is ``tuning.champion``; this module
makes the registered model: a pyfunc around the checkpoint with its serving bundle.

"Best" within a sweep is the space's validation metric at the trial's last epoch; errored, diverged
and scheduler-stopped-without-checkpoint trials never qualify. Ties (common on the toy problem,
where many trials reach 100% validation accuracy) go to the lower validation NLL.
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from search_spaces import SearchSpace
from serving.bundle import (
    BUNDLE_ARTIFACT,
    KEEP_FRACTION,
    OUTPUTS,
    ServingModel,
    choose_threshold,
    raw_inputs,
    write_serving_bundle,
)
from serving.pyfunc import CODE_PATHS, MODEL_CODE, model_requirements
from trainables.checkpoint import load_classifier
from trainables.checksums import TamperedFile
from trainables.data import import_loader, input_batches
from trainables.loop import predict_probabilities
from trainables.losses import LOSSES
from trainables.train import cached_dataset
from trainables.trial_config import upgraded
from trainables.trial_metrics import SELECTION_METRICS
from tuning.champion import (
    CHALLENGER,
    CHAMPION,
    Promotion,
    SweepPromotion,
    contest,
    registered_name,
    set_alias,
    sweep_versions,
)
from tuning.options import POLICIES, REGISTERS_NOTHING
from tuning.settings import Settings
from tuning.timeline import mark
from tuning.tracking import close_parent, find_runs, without_registration_notices

log = logging.getLogger(__name__)


def _qualifies(result, metric: str) -> bool:
    if result.error is not None or result.checkpoint is None:
        return False
    value = result.metrics.get(metric)
    return not result.metrics.get("diverged") and value is not None and math.isfinite(value)


def ranked_results(results, space: SearchSpace) -> dict[str, list]:
    """loss -> its qualifying ``ray.tune.Result``s, best first (losses with none are left out)."""
    sign = 1.0 if space.mode == "max" else -1.0
    ranked: dict[str, list] = {}
    for result in results:
        if _qualifies(result, space.metric):
            ranked.setdefault(upgraded(result.config)["loss"], []).append(result)
    for candidates in ranked.values():
        candidates.sort(
            key=lambda r: (sign * r.metrics[space.metric], -r.metrics.get("val_nll", math.inf)), reverse=True
        )
    return ranked


def best_results(results, space: SearchSpace) -> dict[str, Any]:
    """loss -> the best qualifying ``ray.tune.Result`` of that loss (losses with none are left out)."""
    return {loss: candidates[0] for loss, candidates in ranked_results(results, space).items()}


def promote(
    results,
    space: SearchSpace,
    sweep: str,
    experiment_id: str,
    settings: Settings,
    policy: str = "better",
    smoke_test: bool = False,
) -> SweepPromotion:
    """Register each loss's best trial of ``sweep`` and move ``champion`` to it as ``policy`` says.

    The registered model is an MLflow pyfunc from code (``serving/pyfunc_model.py``) around a
    bundle of the weights, the checkpoint's metadata and ``serving.json`` (classes, loss,
    preprocessing, the none-of-the-above threshold chosen on the validation split, SHA-256 of each
    file): raw inputs in; probabilities, confidence, prediction and none_of_the_above out. The
    version's tags say which sweep and trial it came from, its selection metric and why it is
    (or is not) the champion; ``challenger`` points at it either way.

    A loss whose sweep already registered a version (a finished sweep resumed) keeps that version:
    nothing new is registered, and the champion decision is made again (it changes nothing when
    the first decision was recorded).

    Each checkpoint is verified (SHA-256) before it is loaded: a corrupted one is named in the
    outcome's ``failures`` and the loss's next best intact trial is registered instead.
    """
    failures: dict[str, str] = {}
    if policy not in POLICIES:
        raise ValueError(f"unknown promotion policy {policy!r}; choose from: {', '.join(POLICIES)}")
    mlflow.set_tracking_uri(settings.tracking_uri)
    client = MlflowClient(settings.tracking_uri)
    promotions = {}
    for loss, candidates in ranked_results(results, space).items():
        name = registered_name(space.name, loss)
        if policy == REGISTERS_NOTHING:
            result = candidates[0]
            number = int(result.config["trial_number"])
            (trial_run,) = find_runs(
                client, experiment_id, kind="trial", sweep=sweep, loss=loss, trial_number=str(number)
            )
            promotions[loss] = Promotion(loss, number, float(result.metrics[space.metric]), name, None,
                                         trial_run.info.run_id, False, "--promote never: not registered",
                                         dict(result.config))  # fmt: skip
            continue
        registered = sweep_versions(client, name, sweep)
        if registered:  # this sweep was promoted before: the same trial, already a version
            version = registered[0]
            result = next((r for r in candidates if str(r.config["trial_number"]) == version.tags.get("trial_number")),
                          candidates[0])  # fmt: skip
        else:
            result, version, problem = _register_first_intact(candidates, space, sweep, loss, name, experiment_id,
                                                              client, smoke_test)  # fmt: skip
            if problem:
                failures[loss] = problem
            if version is None:
                continue
        number = int(result.config["trial_number"])
        value = float(result.metrics[space.metric])
        is_champion, reason, decided_before = contest(client, name, version, value, space, policy)
        # A smoke test's model that did not become the champion is registered (its sweep's version)
        # but is nobody's challenger: whoever deploys @challenger would get a one-epoch model.
        alias = CHAMPION if is_champion else (None if smoke_test else CHALLENGER)
        if not decided_before:
            client.set_model_version_tag(name, version.version, "promotion", f"{alias or 'not promoted'}: {reason}")
        if alias is not None:  # the champion is also the newest sweep's best
            # False: a sweep promoting at the same moment set it first, and its best is as new as this one
            set_alias(client, name, CHALLENGER, version.version)
        # the version's run is the trial's: the model was logged there
        promotions[loss] = Promotion(loss, number, value, name, str(version.version), version.run_id,
                                     is_champion, reason, dict(result.config), alias)  # fmt: skip
        log.info("%s trial %d -> %s v%s: %s", loss, number, name, version.version, reason)
    return SweepPromotion(promotions, failures)


def prepare_promotion(space: SearchSpace) -> None:
    """Do ahead what promotion does first (the sweep's driver does it while Ray starts): import the
    dataset's loader (scikit-learn for digits, 1.7 s), and what MLflow does the first time a process
    logs a model: map every installed distribution to its modules (about 2 s here), to warn about
    pinned requirements the environment does not meet (ours are pinned from this environment)."""
    from mlflow.utils.requirements_utils import _init_packages_to_modules_map  # no public way to warm it

    import_loader(space.dataset)
    _init_packages_to_modules_map()


def _register_first_intact(candidates, space, sweep, loss, name, experiment_id, client, smoke_test):
    """(result, version, problem): the best of ``candidates`` whose checkpoint is intact, registered,
    and the message naming each corrupted one passed over (None if none was). (None, None, problem)
    if none is intact."""
    skipped = []
    for result in candidates:
        number = int(result.config["trial_number"])
        (trial_run,) = find_runs(client, experiment_id, kind="trial", sweep=sweep, loss=loss, trial_number=str(number))
        try:
            version = _register(result, space, sweep, loss, name, trial_run, client, smoke_test)
        except TamperedFile as error:
            skipped.append(f"trial {number}: {error.problem}")
            continue
        except BaseException:  # a signal (Stopped) or a fault mid-registration: leave no half-made version
            _remove_unfinished_versions(client, name, trial_run.info.run_id)
            # logging the model reopened the trial's run (and ending it early marks it failed)
            client.set_terminated(trial_run.info.run_id, status=trial_run.info.status, end_time=trial_run.info.end_time)
            raise
        problem = (f"{loss}: not promoting a corrupted checkpoint ({'; '.join(skipped)}); "
                   f"registered the next best intact trial, {number}, instead") if skipped else None  # fmt: skip
        return result, version, problem
    return None, None, f"{loss}: not promoting a corrupted checkpoint ({'; '.join(skipped)}); no intact trial is left"


def _remove_unfinished_versions(client, name: str, run_id: str) -> None:
    """Delete the versions of ``name`` logged from the trial run ``run_id`` whose tags were not all
    set (``smoke_test`` is the last): a version registered without them is found by no resume."""
    for version in client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'"):
        if "smoke_test" not in version.tags:
            client.delete_model_version(name, version.version)


def _register(result, space: SearchSpace, sweep: str, loss: str, name: str, trial_run, client, smoke_test: bool):
    """Log ``result``'s checkpoint as a pyfunc model in its trial's run and register it as a new
    version of ``name``; returns the ``ModelVersion`` (tagged, no alias yet)."""
    number = int(result.config["trial_number"])
    with result.checkpoint.as_directory() as directory:
        classifier, meta = load_classifier(directory)
    data = cached_dataset(meta["config"])
    confidence = predict_probabilities(classifier, data.val.x).max(axis=1)  # batched: any model size
    threshold = choose_threshold(confidence)
    raw = raw_inputs(data.preprocessing, next(input_batches(data.val.x, 4))).numpy().astype(np.float32)  # (4, *raw)
    # The signature takes one flattened raw input per row: a DataFrame row, an array row or a JSON list.
    example = raw.reshape(len(raw), -1)
    if data.tokenizer:  # a text model is registered to take text: it tokenizes as training did
        from trainables.data.clinc import load_tokenizer

        tokenizer = load_tokenizer(data.tokenizer)
        example = pd.DataFrame({"text": [tokenizer.decode([int(i) for i in ids]) for ids in raw]})
    with tempfile.TemporaryDirectory() as scratch:
        bundle = write_serving_bundle(
            Path(scratch) / BUNDLE_ARTIFACT,
            classifier,
            meta,
            experiment=space.name,
            dataset=space.dataset,
            loss=loss,
            loss_title=LOSSES[loss].title,
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
        with mlflow.start_run(run_id=trial_run.info.run_id), without_registration_notices():
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=MODEL_CODE,
                artifacts={BUNDLE_ARTIFACT: str(bundle)},
                code_paths=CODE_PATHS,  # serving/ and trainables/ travel with the model
                signature=infer_signature(example, outputs),
                input_example=example,
                registered_model_name=name,
                pip_requirements=model_requirements(upgraded(meta["config"])["model"]),
            )
    mark("model logged")
    # Logging reopened the trial's run; its end time stays the trial's, not the promotion's.
    client.set_terminated(trial_run.info.run_id, status=trial_run.info.status, end_time=trial_run.info.end_time)
    version = str(info.registered_model_version)
    client.update_registered_model(
        name,
        description=f"{space.name}: the best {loss} ({LOSSES[loss].title}) model of each ovatune sweep, "
        f"by {space.metric} ({space.mode}), one version per sweep. Raw inputs in; probabilities, confidence, "
        f"prediction and none_of_the_above out. The alias `{CHAMPION}` points at the best so far (it moves "
        f"only when a sweep beats it), `{CHALLENGER}` at the newest sweep's best (a smoke test's only if it "
        f"became the champion); each version's `promotion` "
        "tag says why.",
    )
    for key, value in {
        "sweep": sweep,
        "loss": loss,
        "trial_number": number,
        "selection_metric": space.metric,
        # every validation metric, so that a later sweep selecting by another one can be compared
        **{metric: result.metrics[metric] for metric in SELECTION_METRICS if metric in result.metrics},
        "none_of_the_above_threshold": f"{threshold:.6g}",
        "smoke_test": str(smoke_test).lower(),  # the last: a version without it is unfinished
    }.items():
        client.set_model_version_tag(name, version, key, str(value))
    return client.get_model_version(name, version)


def finish_parents(client: MlflowClient, parents: dict[str, str], promoted: SweepPromotion, metric: str) -> None:
    """Close each parent run, recording what was promoted (or why nothing was)."""
    for loss, run_id in parents.items():
        promotion = promoted.promotions.get(loss)
        if promotion is None:
            why = promoted.failures.get(loss, "every trial failed or diverged")
            client.set_tag(run_id, "ovatune.promotion", f"none: {why}")
            close_parent(client, run_id, "FAILED")
            continue
        where = f"{promotion.model_name} v{promotion.version}" if promotion.version else "not registered"
        role = promotion.alias or ""
        client.set_tag(run_id, "ovatune.promotion",
                       f"trial {promotion.trial_number} -> {where}: {role + ': ' if role else ''}{promotion.reason}")  # fmt: skip
        client.log_metric(run_id, f"best_{metric}", promotion.metric)
        close_parent(client, run_id, "FINISHED")
