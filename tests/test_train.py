"""``trainables.train``: one trial's training as Tune sees it, every epoch's report, its checkpoints,
a resume, divergence, and the dataset loaded once per process. ``train_loop`` is called with
``ray.tune.Checkpoint`` and a recorder for its reports, as a Tune trial calls it with ``ray.tune``;
the real Tune path is in test_end_to_end and test_node_failure."""

import math

import pytest
import torch
from ray.tune import Checkpoint

from trainables.train import cached_dataset, train_loop
from trainables.trial_metrics import SELECTION_METRICS

CONFIG = {"dataset": "toy2d", "model": "mlp", "hidden": [16], "optimizer": "adam", "lr": 3e-3, "batch_size": 64,
          "steps_per_epoch": 5, "epochs": 4, "seed": 0, "loss": "dm", "threads": 1, "checkpoint_every": 2}  # fmt: skip


class Reports:
    """Stands in for ``ray.tune`` in ``train_loop``: keeps each report and a copy of its checkpoint."""

    Checkpoint = Checkpoint

    def __init__(self, tmp_path):
        self.tmp_path, self.metrics, self.checkpoints = tmp_path, [], {}

    def report(self, metrics, checkpoint=None):
        self.metrics.append(metrics)
        if checkpoint is not None:  # Tune persists it before the trainable's folder goes away
            kept = checkpoint.to_directory(str(self.tmp_path / f"epoch-{metrics['epoch']}-{len(self.metrics)}"))
            self.checkpoints[metrics["epoch"]] = Checkpoint.from_directory(kept)


def _train(tmp_path, config=CONFIG, checkpoint=None) -> Reports:
    reports = Reports(tmp_path)
    train_loop(config, reports, checkpoint, torch.device("cpu"), {"node_id": "n1", "gpu_ids": ""})
    return reports


def test_every_epoch_reports_every_selection_metric_and_checkpoints_every_second(tmp_path):
    reports = _train(tmp_path)
    assert [m["epoch"] for m in reports.metrics] == [1, 2, 3, 4] and sorted(reports.checkpoints) == [2, 4]
    for metrics in reports.metrics:
        assert all(0 <= metrics[name] < math.inf for name in SELECTION_METRICS) and metrics["diverged"] == 0
        assert metrics["node_id"] == "n1"
        # what this process used, measured where it trains (trainables.system_metrics)
        assert metrics["system/cpu_utilization_percentage"] > 0 and metrics["system/process_memory_rss_megabytes"] > 50
    assert "data_provenance" in reports.metrics[0] and "data_provenance" not in reports.metrics[1]  # once


def test_a_resume_trains_only_the_epochs_after_its_checkpoint(tmp_path):
    first = _train(tmp_path / "first")
    resumed = _train(tmp_path / "resumed", checkpoint=first.checkpoints[2])
    assert [m["epoch"] for m in resumed.metrics] == [3, 4]
    # the same seed, the same batches: resuming at epoch 2 ends where training straight through did
    assert resumed.metrics[-1]["val_nll"] == pytest.approx(first.metrics[-1]["val_nll"], rel=1e-5)


def test_a_checkpoint_of_the_last_epoch_reports_its_result_again_without_training(tmp_path):
    first = _train(tmp_path / "first")
    again = _train(tmp_path / "again", checkpoint=first.checkpoints[4])
    assert len(again.metrics) == 1 and again.metrics[0]["val_accuracy"] == first.metrics[-1]["val_accuracy"]


def test_a_diverged_trial_ends_early_with_nan_metrics_and_its_reason(tmp_path):
    reports = _train(tmp_path, {**CONFIG, "loss": "softmax", "optimizer": "sgd", "lr": 1e5})
    last = reports.metrics[-1]
    assert last["diverged"] == 1 and "non-finite" in last["stop_reason"] and last["epoch"] < CONFIG["epochs"]
    assert all(math.isnan(last[name]) for name in SELECTION_METRICS) and not reports.checkpoints


def test_the_dataset_is_loaded_once_per_process_and_per_data_seed():
    assert cached_dataset(CONFIG) is cached_dataset({**CONFIG, "loss": "ova", "lr": 0.1})
    assert cached_dataset({**CONFIG, "data_seed": 1}) is not cached_dataset(CONFIG)


def test_val_examples_validates_on_that_many_evenly_spaced_examples(tmp_path):
    import json

    from evaluation.metrics import classification_metrics
    from trainables.checkpoint import load_classifier
    from trainables.loop import predict_probabilities

    config = {**CONFIG, "val_examples": 50}
    reports = _train(tmp_path, config)
    validation = json.loads(reports.metrics[0]["data_provenance"])[1]
    assert validation["split"] == "validation" and validation["num_examples"] == 50
    full = cached_dataset(config).val
    assert len(full) > 50  # the limit cuts something
    index = torch.linspace(0, len(full) - 1, 50).round().long()
    classifier, _ = load_classifier(reports.checkpoints[4].path)
    probabilities = predict_probabilities(classifier, full.x[index])
    want = classification_metrics(probabilities, full.y[index].numpy())["accuracy"]
    assert reports.metrics[-1]["val_accuracy"] == pytest.approx(want)
    everything = classification_metrics(predict_probabilities(classifier, full.x), full.y.numpy())["accuracy"]
    assert everything != pytest.approx(want)  # measured on the 50, not on the whole split
