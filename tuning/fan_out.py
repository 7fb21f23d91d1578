"""Evaluation fan-out: each model measured in its own Ray task, all at once as the cluster allows.

One task per loss asks for one GPU when the cluster has (or can launch) a GPU node, else one CPU;
it loads the registered model itself (nothing large crosses the object store on the way in) and
returns its ``evaluation.runner.Evaluation``. A task's failure is that loss's alone.
"""

from __future__ import annotations

import mlflow

from evaluation.runner import evaluate_model
from search_spaces import SearchSpace
from trainables.data import load_dataset
from trainables.models import ProbabilityModel
from tuning.cluster import evaluation_gpus, init_ray
from tuning.errors import one_line
from tuning.settings import Settings


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
    """loss -> ``Evaluation`` of ``versions`` (loss -> ``ModelVersion``), each measured in its own Ray
    task (one GPU each when the cluster has GPUs, else one CPU), all at once as the cluster allows. A
    model whose task fails goes to ``failures`` (loss -> message); the others are still measured."""
    import ray

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
            failures[loss] = f"{loss}: evaluation failed: {one_line(cause)}"
    return evaluations
