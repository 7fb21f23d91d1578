"""``tuning.importance``: fANOVA names what a synthetic objective depends on; trials read back from a
real MLflow store; the table and the figures show what they should."""

import math

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from search_spaces import get_space
from tuning.importance import (
    MIN_TRIALS,
    SearchedTrials,
    importance_figure,
    importance_table,
    importances,
    searched_trials,
    slice_figure,
)
from tuning.tracking import TAG_KIND, TAG_LOSS, TAG_OUTCOME, TAG_SWEEP, TAG_TRIAL_NUMBER

SPACE = get_space("digits")  # lr (log), adam_beta1, adam_eps (log)


def _sampled(n: int, seed: int) -> list[dict[str, float]]:
    """``n`` draws from the space's ranges, as the random search samples them."""
    rng = np.random.default_rng(seed)

    def draw(r):
        return float(np.exp(rng.uniform(np.log(r.low), np.log(r.high)))) if r.log else float(rng.uniform(r.low, r.high))

    return [{name: draw(r) for name, r in SPACE.ranges.items()} for _ in range(n)]


@pytest.mark.parametrize("depends_on", list(SPACE.ranges))
def test_the_hyperparameter_a_synthetic_objective_depends_on_comes_first(depends_on):
    params = _sampled(40, seed=1)
    scale = (lambda v: math.log10(v)) if SPACE.ranges[depends_on].log else (lambda v: v)
    values = [-((scale(p[depends_on]) - scale(params[0][depends_on])) ** 2) for p in params]  # peak at trial 0
    scores = importances(SearchedTrials(params, values), SPACE, mode="max")
    assert next(iter(scores)) == depends_on and scores[depends_on] > 0.6, scores
    assert sum(scores.values()) == pytest.approx(1.0)


def test_too_few_or_identical_trials_have_no_importance():
    params = _sampled(MIN_TRIALS, seed=2)
    assert importances(SearchedTrials(params[:-1], [0.1, 0.2, 0.3][: MIN_TRIALS - 1]), SPACE, "max") is None
    assert importances(SearchedTrials(params, [0.5] * MIN_TRIALS), SPACE, "min") is None


def test_trials_are_read_back_from_their_runs_leaving_out_those_that_did_not_finish(tmp_path):
    """As the tracking callback logs them: a diverged trial's last logged value is finite (its last
    finite epoch), so its outcome, not its value, leaves it out."""
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("digits", artifact_location=str(tmp_path / "artifacts"))
    params = _sampled(5, seed=3)
    outcomes = ["completed", "diverged", "stopped", "error", "interrupted"]
    for number, (p, value, outcome) in enumerate(zip(params, [0.4, 0.9, 0.2, 0.7, 0.6], outcomes)):
        run = client.create_run(experiment, tags={TAG_KIND: "trial", TAG_SWEEP: "s", TAG_LOSS: "ova",
                                                  TAG_TRIAL_NUMBER: str(number), TAG_OUTCOME: outcome})  # fmt: skip
        for name, v in p.items():
            client.log_param(run.info.run_id, name, v)
        client.log_metric(run.info.run_id, "val_nll", value)
    other = client.create_run(experiment, tags={TAG_KIND: "trial", TAG_SWEEP: "s", TAG_LOSS: "dm",
                                                TAG_OUTCOME: "completed"})  # fmt: skip
    client.log_metric(other.info.run_id, "val_nll", 0.1)  # another loss: not ova's

    trials = searched_trials(client, experiment, "s", "ova", SPACE, "val_nll")
    assert sorted(trials.values) == [0.2, 0.4]  # completed and stopped by ASHA
    assert sorted(p["lr"] for p in trials.params) == pytest.approx(sorted([params[0]["lr"], params[2]["lr"]]))


def test_the_table_has_a_row_per_loss_and_says_why_one_has_none():
    table = importance_table({"softmax": {"lr": 0.7, "adam_beta1": 0.2, "adam_eps": 0.1}, "ova": None}, SPACE)
    header, _, softmax, ova = table.splitlines()
    assert header == "| loss | `lr` | `adam_beta1` | `adam_eps` |"
    assert softmax == "| softmax | 0.70 | 0.20 | 0.10 |"
    assert ova.startswith(f"| ova | needs {MIN_TRIALS} finished trials")


def test_the_importance_figure_draws_a_bar_per_loss_and_hyperparameter():
    scores = {"softmax": {"lr": 0.7, "adam_beta1": 0.2, "adam_eps": 0.1},
              "dm": {"lr": 0.1, "adam_beta1": 0.6, "adam_eps": 0.3}, "ova": None}  # fmt: skip
    ax = importance_figure(scores, SPACE).axes[0]
    widths = sorted(round(p.get_width(), 6) for p in ax.patches)
    assert widths == sorted([0.7, 0.2, 0.1, 0.1, 0.6, 0.3])  # ova has none: no bars
    assert [t.get_text() for t in ax.get_yticklabels()] == list(SPACE.ranges)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["softmax", "dm"]
    assert ax.get_xlim() == (0, 1)


def test_the_slice_figure_plots_every_trial_against_the_metric():
    searched = {"softmax": SearchedTrials(_sampled(5, seed=4), [0.1, 0.2, 0.3, 0.4, 0.5]),
                "dm": SearchedTrials(_sampled(3, seed=5), [0.6, 0.7, 0.8])}  # fmt: skip
    fig = slice_figure(searched, SPACE, "val_nll")
    assert [ax.get_xlabel() for ax in fig.axes] == list(SPACE.ranges)
    assert [ax.get_xscale() for ax in fig.axes] == ["log" if r.log else "linear" for r in SPACE.ranges.values()]
    assert fig.axes[0].get_ylabel() == "val_nll"
    for ax, name in zip(fig.axes, SPACE.ranges):
        softmax, dm = ax.collections
        assert list(softmax.get_offsets()[:, 0]) == pytest.approx([p[name] for p in searched["softmax"].params])
        assert list(dm.get_offsets()[:, 1]) == [0.6, 0.7, 0.8]
