"""Replicates: each loss's champion configuration trained again with R new seeds, as Ray Tune trials.

A champion is one training run, picked as the best of a sweep: its test numbers mix what the
configuration does with the luck of its seed (and picking the best favours lucky seeds).
Replicates measure the configuration. Replicate r (0..R−1) of a loss is the champion's config
(as its registered bundle recorded it) with ``seed = replicate_seed(seed, r)``: new initial
weights and a new data order; the data split (``data_seed``) stays the experiment's. The champion
that serves stays the selected model; the report's statistics over seeds come from the replicates.

The replicates of all losses run as one Tune experiment, ``replicates-<experiment>-<date>-<time>-
<hex>`` in Tune's storage (the home's ray_results, or ``--storage``), sharing the machine's or cluster's slots like a sweep's
trials, and resuming like one (``ovatune replicate <exp> --resume``) after Ctrl-C or a killed
driver. In MLflow:

    run  "softmax replicates · <champion's sweep>"   ovatune.kind=replicates, one per loss
      run  "softmax-replicate-000"                   ovatune.kind=replicate: params, metrics per
                                                     epoch, its final checkpoint as `checkpoint/`

A replicate's run is keyed by (set, loss, replicate number), as a sweep's trials are: a resumed
set continues its runs and never duplicates one.
"""

from __future__ import annotations

import json
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import RunTag
from mlflow.tracking import MlflowClient
from ray.tune.search import Searcher

from search_spaces import SearchSpace
from serving.bundle import BUNDLE_ARTIFACT, BUNDLE_META
from trainables.loss_names import LOSS_TITLES
from trainables.trial_config import upgraded
from trainables.trial_metrics import get_selection_metric
from tuning.champion import NoChampion, champion_versions
from tuning.engine import (
    REPLICATES,
    Job,
    JobOutcome,
    JobPlan,
    TrialShape,
    name_job,
    planned_trainable,
    resume_job,
    start_job,
)
from tuning.settings import Settings, redact
from tuning.timeline import mark
from tuning.tracking import (
    TAG_LOSS,
    TAG_OUTCOME,
    TAG_SWEEP,
    TAG_TRIAL_NUMBER,
    close_parent,
    find_runs,
    get_or_create_experiment,
    parent_runs,
)

TAG_CHAMPION = "ovatune.champion"  # on a replicate set's parent: "<registered model> v<version>" it replicates
TAG_SEEDS = "ovatune.replicate_seeds"  # on the parent: R
CHECKPOINT_ARTIFACT = "checkpoint"  # a finished replicate's final checkpoint, in its run's artifacts
TAG_CHECKPOINT_LOGGED = "ovatune.checkpoint_logged"  # "true" once all of it is (a stop mid-upload leaves part)
MIN_REPLICATES = 2  # an interval over seeds needs two


def replicate_seed(seed: int, number: int) -> int:
    """Replicate ``number``'s training seed: it depends only on the set's ``seed`` and the number,
    so replicate r of every loss shares one seed (their differences are paired over seeds)."""
    return zlib.crc32(f"replicate/{seed}/{number}".encode())


class GivenConfigs(Searcher):
    """Suggests exactly ``configs``, in order, once each; its position is saved with the experiment,
    so a resumed set hands out only what it had not."""

    def __init__(self, configs: list[dict[str, Any]]):
        super().__init__()
        self.configs = configs
        self.given = 0

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.given >= len(self.configs):
            return Searcher.FINISHED
        self.given += 1
        return dict(self.configs[self.given - 1])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_text(json.dumps({"configs": self.configs, "given": self.given}))

    def restore(self, checkpoint_path: str) -> None:
        self.__dict__.update(json.loads(Path(checkpoint_path).read_text()))


@dataclass(frozen=True)
class ReplicateRequest:
    """``ovatune replicate``'s options (``ovatune run --replicates R`` makes one after its sweep).

    Attributes:
        space: the experiment.
        seeds: R, replicates per loss (at least ``MIN_REPLICATES``).
        losses: which champions to replicate (default: every loss that has one).
        seed: seeds the replicates' seeds (``replicate_seed``).
        address, max_concurrent, cpus_per_trial, gpus_per_trial: as for a sweep (the trial shape
            defaults to the champion's).
        resume: continue the set ``name`` (default: the latest) where it stopped.
        name: the set's name (default: ``tuning.engine.new_job_name``).
        verbose: as a sweep's (0 silent, 1 one progress line, 2 Ray Tune's table).
    """

    space: SearchSpace
    seeds: int
    losses: list[str] | None = None
    seed: int = 0
    address: str | None = None
    max_concurrent: int | None = None
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None
    resume: bool = False
    name: str | None = None
    verbose: int = 1


def champion_config(version) -> dict[str, Any]:
    """The trial config a registered version was trained with (its bundle's ``meta.json``)."""
    with tempfile.TemporaryDirectory() as scratch:
        local = mlflow.artifacts.download_artifacts(
            f"models:/{version.name}/{version.version}", dst_path=scratch
        )  # fmt: skip
        return json.loads((Path(local) / "artifacts" / BUNDLE_ARTIFACT / BUNDLE_META).read_text())["config"]


def replicate_points(
    configs: dict[str, dict[str, Any]], shape: dict[str, Any], seeds: int, seed: int
) -> list[dict[str, Any]]:
    """The set's trial configs: replicate 0 of every loss first, then 1, ... (a set stopped half-way
    has the same seeds for each loss). Each is its champion's config (``configs``: loss -> config)
    under the current key names, with this set's trial ``shape`` and ``replicate_seed(seed, r)``."""
    return [
        {**upgraded(config), **shape, "seed": replicate_seed(seed, number), "trial_number": number}
        for number in range(seeds) for config in configs.values()
    ]  # fmt: skip


def selected_by_metric(space: SearchSpace, champions: dict) -> tuple[str, str]:
    """(metric, mode) the ``champions`` (loss -> ``ModelVersion``) were selected by, from their
    ``selection_metric`` tags; the space's own when they were selected by different ones."""
    metrics = {version.tags.get("selection_metric", space.metric) for version in champions.values()}
    metric = metrics.pop() if len(metrics) == 1 else space.metric
    return metric, get_selection_metric(metric).mode


def run_replicates(request: ReplicateRequest, settings: Settings) -> JobOutcome:
    """Train (or resume training) the replicates ``request`` asks for; see the module doc.

    Raises:
        NoChampion: a loss to replicate has no champion.
        FileNotFoundError: ``resume`` with no set to resume.
        ValueError: fewer than ``MIN_REPLICATES`` seeds; a new set whose name exists.
    """
    space = request.space
    client = MlflowClient(settings.tracking_uri)
    mlflow.set_tracking_uri(settings.tracking_uri)
    experiment_id = get_or_create_experiment(client, space.name, space.description, settings)
    if not request.resume and request.seeds < MIN_REPLICATES:
        raise ValueError(
            f"--replicates {request.seeds}: an interval over seeds needs at least {MIN_REPLICATES} replicates"
        )
    name = name_job(REPLICATES, space, settings, client, experiment_id, request.name, request.resume)
    shape = TrialShape(request.cpus_per_trial, request.gpus_per_trial)
    if request.resume:  # a set from before sets recorded their metric showed accuracy
        return resume_job(REPLICATES, name, space, settings, client, experiment_id, request.address, shape,
                          default_metric="val_accuracy")  # fmt: skip

    champions = champion_versions(client, space.name)
    wanted = request.losses or [loss for loss in LOSS_TITLES if loss in champions]
    missing = [loss for loss in wanted if loss not in champions]
    if missing or not wanted:
        raise NoChampion(f"no champion of {', '.join(missing) or 'any loss'} of {space.name!r} in "
                         f"{redact(client.tracking_uri)} to replicate; run `ovatune sweep {space.name}` first")  # fmt: skip
    champions = {loss: champions[loss] for loss in wanted}
    configs = {loss: champion_config(champions[loss]) for loss in wanted}
    metric, mode = selected_by_metric(space, champions)
    trainable, resources, slots = planned_trainable(space, request.address, next(iter(configs.values())), shape)
    # The trial shape is this set's (as planned for this cluster), the rest the champion's.
    shape = {"threads": max(1, int(resources.cpus)), "workers_per_trial": resources.workers,
             **({"cpus_per_worker": resources.cpus, "gpus_per_worker": resources.gpus} if resources.workers > 1 else {})}  # fmt: skip
    points = replicate_points(configs, shape, request.seeds, request.seed)
    set_params = {"seeds": request.seeds, "seed": request.seed, "metric": metric, "workers_per_trial": resources.workers,
                  "cpus_per_worker": resources.cpus, "gpus_per_worker": resources.gpus}  # fmt: skip
    parents = parent_runs(
        client, experiment_id, name, wanted, set_params,
        kind=REPLICATES.parent_kind,
        titles={loss: f"{loss} replicates · {champions[loss].tags.get('sweep', 'unknown')}" for loss in wanted},
        tags={loss: {TAG_CHAMPION: f"{champions[loss].name} v{champions[loss].version}",
                     TAG_SEEDS: str(request.seeds)} for loss in wanted},
    )  # fmt: skip
    for loss, run_id in parents.items():
        client.log_param(run_id, "champion_config", json.dumps(configs[loss])[:6000])
    job = Job(REPLICATES, name, experiment_id, parents, metric, mode, {k: str(v) for k, v in set_params.items()})
    plan = JobPlan(
        searcher=GivenConfigs(points),
        num_samples=len(points),
        per_loss=request.seeds,
        columns=["loss", "trial_number", "seed"],
        max_concurrent=request.max_concurrent,
    )
    return start_job(job, plan, trainable, resources, slots, settings, request.verbose)


def finish_replicates(client: MlflowClient, outcome: JobOutcome) -> dict[str, list[str]]:
    """Log each finished replicate's final checkpoint into its run (``checkpoint/``) and close the
    parents; returns loss -> the run ids of its finished replicates.

    A stop part-way (``tuning.interruption.Stopped``) leaves the parents open for ``--resume``, which
    logs again each checkpoint not yet tagged whole (:data:`TAG_CHECKPOINT_LOGGED`) and then closes them.
    """
    finished: dict[str, list[str]] = {}
    runs = {(r.data.tags[TAG_LOSS], int(r.data.tags[TAG_TRIAL_NUMBER])): r
            for r in find_runs(client, outcome.experiment_id, kind="replicate", sweep=outcome.name)}  # fmt: skip
    for result in outcome.results or []:
        loss, number = result.config["loss"], int(result.config["trial_number"])
        run = runs.get((loss, number))
        if run is None or result.error is not None or result.checkpoint is None or result.metrics.get("diverged"):
            continue
        if run.data.tags.get(TAG_OUTCOME) != "completed":
            continue
        if run.data.tags.get(TAG_CHECKPOINT_LOGGED) != "true":
            with result.checkpoint.as_directory() as directory:
                client.log_artifacts(run.info.run_id, directory, CHECKPOINT_ARTIFACT)
            client.set_tag(run.info.run_id, TAG_CHECKPOINT_LOGGED, "true")
            mark("replicate checkpoint logged")
        finished.setdefault(loss, []).append(run.info.run_id)
    for loss, run_id in outcome.parents.items():
        done = len(finished.get(loss, []))
        client.log_batch(run_id, tags=[RunTag("ovatune.replicates_finished", str(done))])
        close_parent(client, run_id, "FINISHED" if done >= MIN_REPLICATES else "FAILED")
    return finished


def replicate_runs(client: MlflowClient, experiment_id: str, versions: dict) -> dict[str, list]:
    """loss -> the finished replicate runs (with their checkpoints) of its evaluated version, from
    the newest finished set that replicated exactly that version; losses without are left out."""
    by_loss = {}
    for loss, version in versions.items():
        champion = f"{version.name} v{version.version}"
        sets = [run for run in find_runs(client, experiment_id, kind="replicates", loss=loss)
                if run.data.tags.get(TAG_CHAMPION) == champion and run.info.status == "FINISHED"]  # fmt: skip
        for parent in sorted(sets, key=lambda run: run.info.start_time, reverse=True):
            children = [
                run for run in find_runs(client, experiment_id, kind="replicate", sweep=parent.data.tags[TAG_SWEEP], loss=loss)
                if run.data.tags.get(TAG_OUTCOME) == "completed"
                and CHECKPOINT_ARTIFACT in {a.path for a in client.list_artifacts(run.info.run_id)}
            ]  # fmt: skip
            if len(children) >= MIN_REPLICATES:
                by_loss[loss] = sorted(children, key=lambda run: int(run.data.tags[TAG_TRIAL_NUMBER]))
                break
    return by_loss
