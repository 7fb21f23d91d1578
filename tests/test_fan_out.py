"""``tuning.fan_out``: which model a measurement belongs to, and the progress line while they run.
The Ray tasks themselves run in every evaluation end to end (test_end_to_end, test_replicates)."""

import subprocess
import sys

import pytest

from tuning.fan_out import ModelKey, ShiftedSetCounts, _evaluate_model, _progress

from launch import environment


def test_a_model_key_names_the_selected_model_or_a_replicate():
    assert ModelKey("softmax").label == "softmax" and ModelKey("softmax").replicate is None
    assert ModelKey("ova_dm", 0).label == "ova_dm replicate 0"  # replicate 0 is a replicate, not the selected one
    assert ModelKey("ova", 2) == ("ova", 2) and ModelKey("ova") != ModelKey("ova", 0)


def test_the_progress_line_counts_models_and_shifted_sets():
    assert _progress({}, 0, 4, "3 s") == "evaluating: 0/4 models done · 3 s"
    counts = {"softmax": [10, 95], "dm": [95, 95]}  # (measured, per model) of the models that started
    assert _progress(counts, 1, 4, "35 s") == "evaluating: 1/4 models done · shifted test sets 105/380 · 35 s"


# What a Ray worker imports to run a task or host an actor: the module its function or class is defined
# in (Ray pickles them by reference), over the ``ray`` a worker has already imported.
WHAT_A_WORKER_IMPORTS = """
import sys, ray
before = set(sys.modules)
__import__(sys.argv[1])
print(",".join(m for m in ("torch", "mlflow", "ray.tune") if m in sys.modules and m not in before))
"""


@pytest.mark.parametrize(
    ("runs_in_a_worker", "needs_not"),
    [
        (ShiftedSetCounts, {"torch", "mlflow", "ray.tune"}),  # the progress counter, beside the measuring tasks
        (_evaluate_model, {"ray.tune"}),  # a measuring task: the model and its store, not Ray Tune
    ],
)
def test_the_evaluations_ray_workers_import_only_what_they_run(runs_in_a_worker, needs_not):
    """The counter's process took 6.3 s and 720 MB to start when its class came with torch, MLflow and
    Ray Tune; each measuring task's process paid 0.8 s for Ray Tune, which only the driver uses."""
    imported = subprocess.run([sys.executable, "-c", WHAT_A_WORKER_IMPORTS, runs_in_a_worker.__module__],
                              capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert not needs_not & set(imported.split(",")), f"{runs_in_a_worker.__qualname__}'s worker imports {imported}"


# On a real local Ray: two tasks at once (each on one of two CPUs), asked whether their worker had
# already imported the evaluation's code, before and after warm_workers.
WARMED = """
import os, sys, time, ray
from tuning.cluster import init_ray
from tuning.fan_out import warm_workers

init_ray(None)
ask = ray.remote(num_cpus=1)(lambda: (time.sleep(1), "tuning.fan_out" in sys.modules, os.getpid())[1:])
before = ray.get([ask.remote() for _ in range(2)])
ray.get(warm_workers(2))
after = ray.get([ask.remote() for _ in range(2)])
print([ready for ready, _ in before], [ready for ready, _ in after], len({pid for _, pid in after}))
"""


@pytest.mark.slow
def test_warmed_workers_are_the_ones_the_evaluations_tasks_then_run_in():
    """``ovatune run`` warms a local Ray's workers when its trials end: their imports (8-10 s on two
    cores) overlap the promotion, and the measuring tasks reuse them instead of starting cold."""
    ran = subprocess.run([sys.executable, "-c", WARMED], env=environment(), capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.strip().splitlines()[-1] == "[False, False] [True, True] 2", ran.stdout
