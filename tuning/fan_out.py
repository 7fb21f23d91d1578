"""Evaluation fan-out: each model measured in its own Ray task, all at once as the cluster allows.

One task per model asks for one GPU when the cluster has (or can launch) a GPU node, else one CPU;
it loads the model itself (nothing large crosses the object store on the way in) from where its
files are: a registered version's artifacts, or a replicate's logged checkpoint (the driver
resolves both URIs, so that a task needs no MLflow store of its own). It returns the model's
``evaluation.runner.Evaluation``. A task's failure is that model's alone.

Progress: each task counts its shifted test sets into one small actor (``ShiftedSetCounts``), and
the driver draws one line from it (``tuning.progress``): models done, shifted sets measured, time.
Tasks print nothing themselves, so the output of many workers never interleaves.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import mlflow

from evaluation.runner import Evaluation, evaluate_model
from search_spaces import SearchSpace
from trainables.data import INTENSITIES, load_dataset
from trainables.models import ProbabilityModel
from tuning.cluster import init_ray
from tuning.errors import one_line
from tuning.resources import evaluation_gpus
from tuning.settings import Settings
from tuning.shifted_set_counts import ShiftedSetCounts


@functools.lru_cache(maxsize=1)
def _dataset(name: str, data_dir, data_seed: int):
    """The dataset, kept by the worker process for its next task: the models of one evaluation (a
    champion and its replicates) then share its shifted sets, which each task would otherwise
    corrupt again. One at a time: a task holds its sets anyway while it runs."""
    return load_dataset(name, data_dir, data_seed)


def _load_classifier(model_uri: str, registered: bool):
    """The classifier behind ``model_uri``: a registered version's pyfunc (``registered``; its files'
    hashes checked), or a logged checkpoint directory (verified by
    ``trainables.checkpoint.load_classifier``)."""
    if registered:
        # suppress_warnings: no check of its pip requirements against this environment (1-2 s)
        return mlflow.pyfunc.load_model(model_uri, suppress_warnings=True).unwrap_python_model().model.classifier
    import tempfile

    from trainables.checkpoint import load_classifier

    with tempfile.TemporaryDirectory() as scratch:
        return load_classifier(mlflow.artifacts.download_artifacts(model_uri, dst_path=scratch))[0]


class ModelKey(NamedTuple):
    """Which model of a loss: its selected one (the champion, ``replicate`` None) or a replicate."""

    loss: str
    replicate: int | None = None

    @property
    def label(self) -> str:
        """``softmax`` for a loss's selected model, ``softmax replicate 2`` for one of its replicates."""
        return self.loss if self.replicate is None else f"{self.loss} replicate {self.replicate}"


def _evaluate_model(tracking_uri: str, model_uri: str, key: ModelKey, dataset: str, data_dir, data_seed: int,
                    counts) -> Evaluation:  # fmt: skip
    """One model's measurements, where it runs: on the GPU if the task was given one; ``counts``
    (a ``ShiftedSetCounts`` actor) hears of each shifted set measured."""
    import torch

    from tuning.tracking import quiet_mlflow_logs

    quiet_mlflow_logs()
    mlflow.set_tracking_uri(tracking_uri)
    classifier = _load_classifier(model_uri, registered=key.replicate is None)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = ProbabilityModel(classifier).to(device).eval()
    data = _dataset(dataset, data_dir, data_seed)
    if data.shifted is None:
        return evaluate_model(model, data, key.loss)
    counts.start.remote(key.label, len(INTENSITIES) * len(data.shift_corruptions))
    return evaluate_model(
        model, data, key.loss, on_shifted_set=lambda corruption, intensity: counts.advance.remote(key.label)
    )


def _ready() -> None:
    """Nothing more than what a worker imports to run it: this module (torch, the data loaders, the
    evaluation) and MLflow's model loading, as a task that measures a model would first."""
    import mlflow.pyfunc  # noqa: F401


_warming: list = []  # the warm-up tasks still to wait for: evaluate_models submits its own after them


def warm_workers(models: int) -> list:
    """Have a local Ray's idle workers import what the evaluation's tasks run, now, without waiting:
    ``models`` of them at most, one per CPU. Returns the warm-up tasks' refs, which
    :func:`evaluate_models` waits for before it submits its tasks (which then reuse those workers).

    Why: ``ovatune run`` evaluates right after its promotion. A task's worker spent 8-10 s importing
    (2 cores, the team test's timeline) before it measured anything; started when the trials end,
    those imports overlap the promotion (3-4.5 s per loss with a tracking server). Not where the
    evaluation asks for GPUs: Ray gives each GPU task a fresh worker.
    """
    import ray

    if evaluation_gpus(on_cluster=False):
        return []
    task = ray.remote(num_cpus=1)(_ready)
    # the cluster's CPUs, not the free ones: Ray's view of those lags (the trials' just ended)
    _warming[:] = [task.remote() for _ in range(min(models, int(ray.cluster_resources().get("CPU", 0))))]
    return list(_warming)


def evaluate_models(
    space: SearchSpace,
    settings: Settings,
    models: dict[ModelKey, str],
    data_dir,
    data_seed: int,
    address: str | None = None,
) -> tuple[dict[ModelKey, Evaluation], dict[str, str]]:
    """(key -> ``Evaluation``, label -> why it failed) of each of ``models`` (key -> model URI), each
    measured in its own Ray task (one GPU each when the cluster has GPUs, else one CPU), all at once
    as the cluster allows. A model whose task fails is named with its error; the others are still
    measured."""
    import ray

    # here, not at the top: the tasks' worker processes import this module to run _evaluate_model,
    # and the progress line's module imports Ray Tune (0.8 s each), which only the driver needs
    from tuning.progress import ProgressLine

    init_ray(address)  # no-op when a sweep already connected this process
    if _warming:  # warm_workers' imports finish first, so that the tasks find those workers idle
        ray.wait(_warming, num_returns=len(_warming), timeout=60)
        _warming.clear()
    gpus = evaluation_gpus(on_cluster=address is not None)  # on a cluster: a GPU node it can launch counts
    task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=1)(_evaluate_model)
    counts = ray.remote(num_cpus=0)(ShiftedSetCounts).remote()
    futures = {
        task.remote(settings.tracking_uri, uri, key, space.dataset, data_dir, data_seed, counts): key
        for key, uri in models.items()
    }  # fmt: skip
    replicates = sum(key.replicate is not None for key in models)
    what = f"{len(models) - replicates} models" + (f" and {replicates} replicates" if replicates else "")
    print(f"evaluating {what} as Ray tasks ({'1 GPU' if gpus else '1 CPU'} each) ...", flush=True)
    line = ProgressLine()
    evaluations, failures, pending = {}, {}, list(futures)
    while pending:
        done, pending = ray.wait(pending, num_returns=1, timeout=1.0)
        for future in done:
            key = futures[future]
            try:
                evaluations[key] = ray.get(future)
            except Exception as error:  # noqa: BLE001 - one model's failure is its own
                cause = getattr(error, "cause", None) or error  # a Ray task's error carries the original
                failures[key.label] = f"{key.label}: evaluation failed: {one_line(cause)}"
        line.update(_progress(ray.get(counts.read.remote()), len(models) - len(pending), len(models), line.elapsed()))
    line.close(f"evaluated {len(evaluations)} of {len(models)} models in {line.elapsed()}")
    ray.kill(counts)
    return {key: evaluations[key] for key in models if key in evaluations}, failures  # in the order asked


def _progress(counts: dict[str, list[int]], finished: int, models: int, elapsed: str) -> str:
    """``evaluating: 5/16 models done · shifted test sets 640/1520 · 35 s``."""
    text = f"evaluating: {finished}/{models} models done"
    if counts:  # every model is measured on the same shifted sets, so the total is known once one started
        measured, per_model = sum(c[0] for c in counts.values()), max(c[1] for c in counts.values())
        text += f" · shifted test sets {measured}/{per_model * models}"
    return f"{text} · {elapsed}"
