"""Which sampled hyperparameters mattered, per loss: Optuna's fANOVA over a sweep's finished trials.

The sweep's trials are read back from MLflow (each trial run holds its sampled ``params`` and its
last reported validation metrics), turned into an in-memory Optuna study with the search space's
distributions, and scored by ``optuna.importance.FanovaImportanceEvaluator`` (a random-forest
functional ANOVA: the share of the metric's variance each hyperparameter explains). Only trials
that completed (or that ASHA stopped) count: diverged, failed and interrupted ones are left out;
with fewer than ``MIN_TRIALS`` of them a loss gets no importance (the report says so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import optuna
from matplotlib.ticker import NullFormatter

from search_spaces import SearchSpace
from tuning.tracking import TAG_OUTCOME, find_runs

MIN_TRIALS = 4  # fewer finished trials cannot separate one hyperparameter's effect from another's
FINISHED_OUTCOMES = ("completed", "stopped")  # trained to the end, or stopped early by ASHA for its metric


@dataclass
class SearchedTrials:
    """One loss's finished trials of a sweep: what was sampled and the selection metric it reached."""

    params: list[dict[str, float]]  # one dict of the space's ranges per trial
    values: list[float]  # the selection metric of each trial, same order


def searched_trials(
    client, experiment_id: str, sweep: str, loss: str, space: SearchSpace, metric: str
) -> SearchedTrials:
    """``loss``'s trials of ``sweep`` that reached a finite ``metric``, read from their MLflow runs."""
    params, values = [], []
    for run in find_runs(client, experiment_id, kind="trial", sweep=sweep, loss=loss):
        value = run.data.metrics.get(metric)
        if run.data.tags.get(TAG_OUTCOME) not in FINISHED_OUTCOMES or value is None or not math.isfinite(value):
            continue  # a diverged trial's last logged value is its last finite one: not what it reached
        if not set(space.ranges) <= set(run.data.params):
            continue
        params.append({name: float(run.data.params[name]) for name in space.ranges})
        values.append(float(value))
    return SearchedTrials(params, values)


def importances(trials: SearchedTrials, space: SearchSpace, mode: str, seed: int = 0) -> dict[str, float] | None:
    """hyperparameter -> its fANOVA importance (they sum to 1), most important first; None with fewer
    than ``MIN_TRIALS`` trials or when every trial reached the same value (nothing to explain)."""
    if len(trials.values) < MIN_TRIALS or np.ptp(trials.values) == 0:
        return None
    distributions = {
        name: optuna.distributions.FloatDistribution(r.low, r.high, log=r.log) for name, r in space.ranges.items()
    }
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    study.add_trials(
        [optuna.trial.create_trial(params=p, distributions=distributions, value=v)
         for p, v in zip(trials.params, trials.values)]
    )  # fmt: skip
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    return dict(optuna.importance.get_param_importances(study, evaluator=evaluator, normalize=True))


def importance_table(by_loss: dict[str, dict[str, float] | None], space: SearchSpace) -> str:
    """A markdown table: one row per loss, one column per hyperparameter (share of the variance)."""
    names = list(space.ranges)
    lines = ["| loss | " + " | ".join(f"`{n}`" for n in names) + " |", "|---|" + "---|" * len(names)]
    for loss, scores in by_loss.items():
        if scores:
            cells = [f"{scores[n]:.2f}" for n in names]
        else:  # the first cell says why, the others stay empty
            cells = [f"needs {MIN_TRIALS} finished trials with distinct values"] + [""] * (len(names) - 1)
        lines.append(f"| {loss} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def importance_figure(by_loss: dict[str, dict[str, float] | None], space: SearchSpace) -> plt.Figure:
    """Grouped horizontal bars: per hyperparameter, one bar per loss with its importance."""
    names = list(space.ranges)
    scored = {loss: scores for loss, scores in by_loss.items() if scores}
    fig, ax = plt.subplots(figsize=(6.4, 0.6 + 0.5 * len(names) * max(1, len(scored)) ** 0.5))
    height = 0.8 / max(1, len(scored))
    for i, (loss, scores) in enumerate(scored.items()):
        positions = np.arange(len(names)) + i * height
        ax.barh(positions, [scores[n] for n in names], height=height, label=loss)
    ax.set_yticks(np.arange(len(names)) + height * (len(scored) - 1) / 2, names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("fANOVA importance (share of the selection metric's variance)")
    ax.set_title(f"{space.name}: hyperparameter importance per loss")
    if scored:
        ax.legend(title="loss", loc="lower right")
    fig.tight_layout()
    return fig


def slice_figure(trials_by_loss: dict[str, SearchedTrials], space: SearchSpace, metric: str) -> plt.Figure:
    """The sampled hyperparameters against the selection metric: one panel per hyperparameter, one
    colour per loss (a slice plot over every finished trial)."""
    names = list(space.ranges)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.0), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        for loss, trials in trials_by_loss.items():
            ax.scatter([p[name] for p in trials.params], trials.values, s=14, alpha=0.8, label=loss)
        if space.ranges[name].log:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # labelled minor ticks overlap on short decades
        ax.set_xlabel(name)
    axes[0][0].set_ylabel(metric)
    axes[0][-1].legend(title="loss", fontsize="small")
    fig.suptitle(f"{space.name}: each finished trial's hyperparameters and {metric}")
    fig.tight_layout()
    return fig
