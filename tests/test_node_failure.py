"""A worker node dies under a running trial: the trial resumes from its last checkpoint on the other
node, the sweep finishes, and MLflow has every trial once with every epoch once. The same for a pack
of trials (``--pack``): every member resumes from its checkpoint, and none runs twice.

A real multi-node Ray on this machine (``ray.cluster_utils.Cluster``: a head with no CPUs for trials
and two worker nodes as separate raylets); the sweep's storage is a directory all of them see.
"""

import json
import threading
import time

import pytest
from mlflow.tracking import MlflowClient

from search_spaces import get_space

pytestmark = pytest.mark.slow

EPOCHS, CHECKPOINT_EVERY = 150, 5


def _rows(path) -> list[dict]:
    """The results a trial has reported so far (the last line may still be being written)."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


@pytest.mark.parametrize("pack", [1, 2])  # two trials, one per node; or both as one pack
def test_a_trial_survives_the_death_of_its_node(home, pack):
    import psutil
    import ray
    from ray.cluster_utils import Cluster

    from tuning.settings import resolve_settings
    from tuning.sweep import PerLossSearch, SweepRequest, run_sweep

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    settings = resolve_settings(str(home))
    outcome, failure = {}, []

    def sweep() -> None:
        try:
            request = SweepRequest(get_space("digits"), ["softmax"], 2, address=cluster.address, cpus_per_trial=1,
                                   name="nodes", verbose=0, pack=pack,
                                   overrides={"epochs": EPOCHS, "checkpoint_every": CHECKPOINT_EVERY})  # fmt: skip
            outcome["sweep"] = run_sweep(request, settings)
        except BaseException as error:  # surfaced by the assertions below
            failure.append(error)

    thread = threading.Thread(target=sweep)
    thread.start()
    try:
        deadline, victim = time.time() + 300, None
        while victim is None:  # once a trial has two checkpoints behind it, kill the node it runs on
            assert time.time() < deadline and thread.is_alive(), failure
            time.sleep(0.2)
            for path in (settings.ray_results / "nodes").glob("*/result.json"):
                rows = _rows(path)
                if len(rows) >= 2 * CHECKPOINT_EVERY + 2:
                    # the trial's worker process (its pid is in every result) was started by its node's raylet
                    raylet = psutil.Process(rows[-1]["pid"]).parent().pid
                    victim = next(w for w in workers if w.all_processes["raylet"][0].process.pid == raylet)
                    break
        cluster.remove_node(victim)
        thread.join(timeout=600)
        assert not thread.is_alive() and not failure and "sweep" in outcome, failure

        client = MlflowClient(settings.tracking_uri)
        experiment = client.get_experiment_by_name("digits")
        runs = client.search_runs([experiment.experiment_id], "tags.`ovatune.kind` = 'trial'")
        assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
        searcher = PerLossSearch(get_space("digits"), ["softmax"], 2, 0)  # the seeded sequence, intact
        drawn = {c["trial_number"]: c["lr"] for c in (searcher.suggest(f"t{i}") for i in range(2))}
        assert {int(r.data.tags["ovatune.trial_number"]): float(r.data.params["lr"]) for r in runs} == pytest.approx(
            drawn
        )
        for run in runs:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
            assert sorted(steps) == list(range(1, EPOCHS + 1)), (run.info.run_name, steps)

        restored, results = [], list((settings.ray_results / "nodes").glob("*/result.json"))
        assert len(results) == 2 // pack  # Tune trials: two, or one pack
        for path in results:
            rows = _rows(path)
            assert [r["epoch"] for r in rows].count(1) == 1, "a trial started over from epoch 0"
            # Ray counts iterations since the last restore: a 1 after the first row is a restore
            restored += [r["epoch"] for r in rows[1:] if r["iterations_since_restore"] == 1]
        assert len(restored) == 1, restored  # the trial on the dead node, once; the other ran through
        assert (restored[0] - 1) % CHECKPOINT_EVERY == 0 and restored[0] > 1  # right after a checkpoint
    finally:
        if thread.is_alive():
            thread.join(timeout=60)
        ray.shutdown()
        cluster.shutdown()
