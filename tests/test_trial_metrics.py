"""``trainables.trial_metrics``: the validation metrics a trial reports, any of which selects the best."""

import numpy as np
import pytest

from evaluation.metrics import classification_metrics
from search_spaces import SPACES, get_space
from trainables.trial_metrics import SELECTION_METRICS, get_selection_metric
from tuning.sweep import selected_by


@pytest.mark.parametrize("name", list(SPACES))
def test_every_spaces_default_metric_is_one_a_trial_reports_with_its_own_mode(name):
    space = get_space(name)
    assert get_selection_metric(space.metric).mode == space.mode


@pytest.mark.parametrize("name", list(SELECTION_METRICS))
def test_each_metric_is_measured_and_its_mode_says_which_way_is_better(name):
    metric = SELECTION_METRICS[name]
    labels = np.array([0, 1, 2, 0])
    good = np.eye(3)[labels] * 0.9 + 0.1 / 3  # (N, K): confident and right
    bad = np.full((4, 3), 1 / 3)  # (N, K): uniform
    better, worse = (
        classification_metrics(good, labels)[metric.measure],
        classification_metrics(bad, labels)[metric.measure],
    )
    assert (better > worse) if metric.mode == "max" else (better < worse)


def test_an_unknown_metric_lists_those_there_are():
    with pytest.raises(ValueError, match="unknown metric 'val_auroc'; choose from: val_accuracy, val_nll"):
        selected_by(get_space("digits"), "val_auroc")
