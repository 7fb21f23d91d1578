"""``tuning.resources``: planning a trial's resources: node types, capacity, the local fallback and the cluster's refusals.

The autoscaling cluster itself (Ray's fake multi-node provider) is in ``test_autoscaling.py``; here
a real local Ray of 2 CPUs stands in for "this machine", and the shipped ``ray_cluster.yaml`` for a
cluster-launcher config.
"""

from pathlib import Path

import pytest

from tuning.resources import (
    TRIAL_DRIVER_MEMORY,
    ClusterCannotRun,
    ClusterShape,
    NodeType,
    TrialResources,
    _node_types_from_config,
    plan_trial_resources,
)

# one worker runs the module: its tests share one in-process Ray (two_cpu_ray)
pytestmark = pytest.mark.xdist_group("test_resources")

ROOT = Path(__file__).resolve().parents[1]
GPU_WORKER = NodeType("gpu_worker", cpus=8, gpus=1, max_count=8)
HEAD = NodeType("head", cpus=8, gpus=0, max_count=1)


def test_how_many_bundles_a_node_type_holds():
    assert GPU_WORKER.holds(4, 1) == 1
    assert GPU_WORKER.holds(1, 0.25) == 4  # fractional GPUs pack trials
    assert GPU_WORKER.holds(2, 0) == 4
    assert HEAD.holds(1, 1) == 0  # no GPU, no GPU trial
    assert HEAD.holds(0, 0) == 0  # an empty request is no bundle
    shape = ClusterShape((HEAD, GPU_WORKER), complete=True, source="test")
    assert shape.capacity(4, 1) == 8 and shape.capacity(4, 0) == 2 + 16 and shape.capacity(1, 2) == 0


def test_the_shipped_cluster_config_gives_its_node_types():
    types = {t.name: t for t in _node_types_from_config(ROOT / "ray_cluster.yaml")}
    assert types["head"] == NodeType("head", 8, 0, 1)
    assert types["gpu_worker"] == NodeType("gpu_worker", 8, 1, 8)
    assert types["gpu_worker_4x"].gpus == 4  # imagenet's 4-worker trials fit on one node


def test_what_a_trial_asks_tune_for():
    assert TrialResources(2, 0.5).tune_request() == {"cpu": 2, "gpu": 0.5}
    # a multi-worker trial's Tune trial only waits: its Ray Train workers ask for CPUs and GPUs
    assert TrialResources(2, 1, workers=4).tune_request() == {"cpu": 0, "memory": TRIAL_DRIVER_MEMORY}
    assert TrialResources(8, 1, workers=4).describe() == "4 workers x (8 CPU, 1 GPU)"


@pytest.fixture(scope="module")
def two_cpu_ray():
    import ray

    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


def test_a_local_ray_fits_a_gpu_space_to_the_machine(two_cpu_ray):
    planned, slots, notes = plan_trial_resources(TrialResources(4, 1), set(), on_cluster=False)
    assert planned == TrialResources(2, 0) and slots == 1
    assert any("trials run on the CPU" in n for n in notes) and any("using 2" in n for n in notes)
    # imagenet's 4 GPU workers per trial: one process per trial on a CPU-only machine
    planned, _, notes = plan_trial_resources(TrialResources(1, 1, workers=4), set(), on_cluster=False)
    assert planned == TrialResources(1, 0, 1) and any("--workers-per-trial" in n for n in notes)
    # asked for on the command line: kept, even where the space wanted GPUs
    planned, slots, _ = plan_trial_resources(TrialResources(1, 1, workers=2), {"workers", "cpus"}, on_cluster=False)
    assert planned == TrialResources(1, 0, 2) and slots == 1
    planned, slots, _ = plan_trial_resources(TrialResources(1, 0), {"cpus"}, on_cluster=False)
    assert slots == 2


def test_a_local_ray_refuses_what_the_command_line_asked_and_the_machine_lacks(two_cpu_ray):
    with pytest.raises(ClusterCannotRun, match="needs 1 GPU"):
        plan_trial_resources(TrialResources(1, 1), {"gpus"}, on_cluster=False)
    with pytest.raises(ClusterCannotRun, match="needs 4 CPUs"):
        plan_trial_resources(TrialResources(2, 0, workers=2), {"cpus", "workers"}, on_cluster=False)


def test_a_cluster_without_an_autoscaler_refuses_gpu_trials_it_can_never_run(two_cpu_ray):
    """As a cluster (--address), the same Ray keeps GPU trials GPU trials: with no autoscaler that could
    bring a GPU node, that is an error naming what the cluster has, not a silent move to the CPU."""
    with pytest.raises(ClusterCannotRun, match=r"no node type of the Ray cluster can hold it: node \w+ \(2 CPU"):
        plan_trial_resources(TrialResources(1, 1), set(), on_cluster=True)
    planned, slots, notes = plan_trial_resources(TrialResources(1, 0, workers=2), set(), on_cluster=True)
    assert planned == TrialResources(1, 0, 2) and slots == 1 and not notes
