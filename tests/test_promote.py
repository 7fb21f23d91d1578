"""Which trial promotion picks per loss (``tuning.promote.ranked_results``), on real ``ray.tune.Result``s."""

import pytest
from ray.tune import Checkpoint, Result

from search_spaces import get_space
from tuning.promote import best_results, prepare_promotion, ranked_results
from tuning.sweep import selected_by

SPACE = get_space("digits")  # val_accuracy, max


def _result(tmp_path, loss, number, accuracy, nll=0.5, diverged=0, error=None, checkpoint=True):
    folder = tmp_path / f"{loss}-{number}"
    folder.mkdir()
    metrics = {"val_accuracy": accuracy, "val_nll": nll, "diverged": diverged, "config": {}}
    return Result(metrics=metrics, checkpoint=Checkpoint.from_directory(str(folder)) if checkpoint else None,
                  error=error, path=str(folder)), {"loss": loss, "trial_number": number}  # fmt: skip


def _results(pairs):
    results = []
    for result, config in pairs:
        result.metrics["config"] = config
        results.append(result)
    return results


@pytest.fixture
def results(tmp_path):
    return _results([
        _result(tmp_path, "softmax", 0, 0.90, nll=0.20),
        _result(tmp_path, "softmax", 1, 0.95, nll=0.40),
        _result(tmp_path, "softmax", 2, 0.95, nll=0.30),  # a tie on accuracy: the lower NLL first
        _result(tmp_path, "softmax", 3, float("nan"), diverged=1),  # diverged: never ranked
        _result(tmp_path, "softmax", 4, 0.99, error=RuntimeError("worker died")),  # errored: never ranked
        _result(tmp_path, "softmax", 5, 0.99, checkpoint=False),  # stopped without a checkpoint
        _result(tmp_path, "ova", 0, float("nan")),  # a NaN metric, not marked diverged: never ranked
        _result(tmp_path, "dm", 0, 0.50),
    ])  # fmt: skip


def test_each_loss_ranks_its_qualifying_trials_best_first_ties_by_nll(results):
    ranked = ranked_results(results, SPACE)
    assert set(ranked) == {"softmax", "dm"}  # ova has no finite metric: no candidate at all
    assert [r.config["trial_number"] for r in ranked["softmax"]] == [2, 1, 0]
    assert best_results(results, SPACE)["softmax"].config["trial_number"] == 2


def test_a_min_metric_ranks_the_lowest_first(results):
    by_nll = selected_by(SPACE, "val_nll")  # what --metric val_nll does to the space
    assert (by_nll.metric, by_nll.mode) == ("val_nll", "min")
    assert [r.config["trial_number"] for r in ranked_results(results, by_nll)["softmax"]] == [0, 2, 1]


def test_results_of_a_sweep_from_before_the_loss_rename_rank_under_their_loss(tmp_path):
    result, config = _result(tmp_path, "dm", 0, 0.8)
    old = _results([(result, {"method": config.pop("loss"), **config})])  # the config key was `method`
    assert best_results(old, SPACE)["dm"] is old[0]


def test_prepare_promotion_does_mlflows_first_log_work_ahead(monkeypatch):
    # MLflow maps installed distributions to modules on a process's first log_model (2 s); the driver
    # does it while Ray starts. This fails if MLflow renames what prepare_promotion warms.
    from mlflow.utils import requirements_utils

    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    monkeypatch.setattr(requirements_utils, "_PACKAGES_TO_MODULES", None)
    prepare_promotion(SPACE)
    assert "torch" in requirements_utils._PACKAGES_TO_MODULES
