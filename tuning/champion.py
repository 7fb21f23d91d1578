"""The champion: one registered model per (experiment, loss), its aliases, when they move, its card.

``ovatune-<exp>-<loss>`` gets one version per sweep (its best trial, tagged ``sweep``, ``loss``,
``trial_number``, the selection metric, ``smoke_test`` and ``promotion``: why it is or is not the
champion). ``champion`` is the best version so far, ``challenger`` the newest sweep's best. This
module decides, looks up (``NoChampion`` is its one error) and writes the model card;
``tuning.promote`` registers the models, ``tuning.evaluate`` and ``tuning.export`` use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from search_spaces import SearchSpace
from trainables.loss_names import LOSS_TITLES
from tuning.options import POLICIES
from tuning.settings import redact
from tuning.store import one_at_a_time

CHAMPION = "champion"  # the alias of the best version so far: what evaluate, export and serving load
CHALLENGER = "challenger"  # the alias of the newest sweep's best version, promoted or not

CARD_FILE = "model_card.md"  # beside the trial's logged model, in the version's description, in each export


class NoChampion(RuntimeError):
    """A loss (or every loss) of an experiment has no registered champion: the user's to fix (exit 2)."""


class NoneEvaluated(NoChampion):
    """There are champions, but none could be loaded or measured: something went wrong (exit 1)."""


def registered_name(experiment: str, loss: str) -> str:
    return f"ovatune-{experiment}-{loss}"


def selection_metric(version: Any, space: SearchSpace) -> str:
    """The validation metric that selected ``version`` (its sweep's ``--metric``); versions
    registered before the tag existed were selected by the space's own."""
    return version.tags.get("selection_metric", space.metric)


def common_selection_metric(versions: list, space: SearchSpace) -> str | None:
    """The metric that selected every one of ``versions``, or None when their sweeps chose differently."""
    metrics = {selection_metric(version, space) for version in versions}
    return metrics.pop() if len(metrics) == 1 else None


@dataclass
class Promotion:
    """What a sweep did with one loss's best trial."""

    loss: str
    trial_number: int
    metric: float  # the trial's selection metric
    model_name: str
    version: str | None  # the registered version (None under --promote never)
    run_id: str  # the trial's MLflow run, which holds the logged model
    is_champion: bool  # whether the version now holds the champion alias
    reason: str  # why it is (or is not) the champion, as the version's `promotion` tag says
    config: dict[str, Any]
    alias: str | None = None  # champion, challenger, or None (not registered, or a smoke test's that lost)


@dataclass(frozen=True)
class SelectedModel:
    """A loss's selected model, to evaluate: its champion, or the version ``evaluate --sweep`` names."""

    version: Any  # the MLflow ModelVersion
    info: dict[str, Any]  # its serving.json: classes, preprocessing, the none-of-the-above threshold


@dataclass
class SweepPromotion:
    """What promoting a sweep did: each loss's :class:`Promotion` (a loss with no qualifying trial has
    none), and for each loss whose best checkpoint was corrupted, what was passed over (and whether
    the next best intact trial was promoted instead)."""

    promotions: dict[str, Promotion]
    failures: dict[str, str]  # loss -> the message naming the corrupted checkpoint


def current_champion(client: MlflowClient, name: str):
    """The ``ModelVersion`` holding the champion alias of registered model ``name``, or None."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:  # no such model, or no version with the alias
        return None


def sweep_versions(client: MlflowClient, name: str, sweep: str) -> list:
    """The versions of registered model ``name`` that sweep ``sweep`` registered (oldest first)."""
    try:
        versions = client.search_model_versions(f"name = '{name}' and tags.sweep = '{sweep}'")
    except MlflowException:
        return []
    return sorted(versions, key=lambda v: int(v.version))


def champion_versions(client: MlflowClient, experiment: str, sweep: str | None = None) -> dict:
    """loss -> ``ModelVersion`` for every loss of ``experiment`` that has one: its champion, or with
    ``sweep`` the version that sweep registered (whether or not it is the champion)."""
    versions = {}
    for loss in LOSS_TITLES:
        name = registered_name(experiment, loss)
        version = (
            current_champion(client, name) if sweep is None else next(iter(sweep_versions(client, name, sweep)), None)
        )
        if version is not None:
            versions[loss] = version
    return versions


def nothing_to_evaluate(experiment: str, tracking_uri: str, sweep: str | None = None) -> NoChampion:
    """The error for an ``experiment`` with no champion (with ``sweep``: no model that sweep
    registered), naming the store and what to run first."""
    if sweep is not None:
        return NoChampion(
            f"sweep {sweep!r} registered no model of {experiment!r} in {redact(tracking_uri)} "
            "(it does not exist, no trial qualified, it is unfinished or it ran with --promote never); "
            f"its trials are in the MLflow UI, and `ovatune evaluate {experiment}` measures the champions"
        )
    return NoChampion(
        f"no registered model of {experiment!r} has the alias {CHAMPION!r} in {redact(tracking_uri)}; "
        f"run `ovatune sweep {experiment}` (or `ovatune run {experiment}`) first"
    )


@dataclass(frozen=True)
class Contest:
    """A new version against the loss's champion, as a promotion policy judges it."""

    held: str  # the champion, as the reason names it: "v3 (val_accuracy 0.91)"
    metric: str
    value: float  # the new version's selection metric
    beats: bool | None  # whether it is strictly better; None when the champion has no value to compare


def if_better(contest: Contest) -> tuple[bool, str]:
    """``--promote better``: the champion moves only when beaten (a tie keeps it)."""
    if contest.beats is None:
        return False, f"champion {contest.held} has no {contest.metric} to compare with; --promote always replaces it"
    if contest.beats:
        return True, f"beat {contest.held} with {contest.metric} {contest.value:.6g}"
    return False, f"did not beat {contest.held}: {contest.metric} {contest.value:.6g}"


def always(contest: Contest) -> tuple[bool, str]:
    """``--promote always``: the newest sweep's best replaces the champion."""
    return True, f"--promote always: replaced {contest.held}"


def only_first(contest: Contest) -> tuple[bool, str]:
    """``--promote first`` (a smoke test's default): a loss's champion is never replaced."""
    return False, f"smoke test: champion stays {contest.held} (--promote better or always to compete)"


def decide(policy: str, metric: str, mode: str, value: float, champion) -> tuple[bool, str]:
    """(becomes champion, why) for a new version whose selection metric is ``value``, under the
    promotion ``policy`` (a key of ``tuning.options.POLICIES``)."""
    if champion is None:
        return True, "first model of this loss"
    try:
        current = float(champion.tags[metric])
        beats = value > current if mode == "max" else value < current
    except (KeyError, ValueError):
        beats = None
    held = f"v{champion.version} ({metric} {champion.tags.get(metric, '?')})"
    return POLICIES[policy].make(Contest(held, metric, value, beats))


def with_recorded_metric(client: MlflowClient, champion, metric: str):
    """``champion`` (a ``ModelVersion`` or None) with ``metric`` among its tags: versions registered
    before every validation metric was tagged carry only their own sweep's, and their trial run holds
    the rest (as its last logged value)."""
    if champion is not None and metric not in champion.tags:
        recorded = client.get_run(champion.run_id).data.metrics.get(metric)
        if recorded is not None:
            champion.tags[metric] = str(recorded)
    return champion


_CONTESTS = 5  # each lost race means another sweep promoted in between: more than a few is not a race


def contest(client: MlflowClient, name: str, version: Any, value: float, space: SearchSpace,
            policy: str) -> tuple[bool, str, bool]:  # fmt: skip
    """(is champion, why, decided before): ``version`` of ``name`` against its champion under
    ``policy``, and the ``champion`` alias moved to it if it wins. A version that already holds the
    alias (its sweep resumed) keeps it, with the reason recorded then.

    Sweeps promote concurrently (two in one home, or a team's on one server), and MLflow has no
    compare-and-set for aliases. In one home the contests take turns (``tuning.store.one_at_a_time``).
    On a server another sweep may move ``champion`` between this one's read and its write: where
    that makes this write fail (:func:`set_alias`), the contest is run again against the champion
    the other set, as if this sweep had come second.
    """
    for _ in range(_CONTESTS):
        with one_at_a_time(client.tracking_uri, "champion"):
            champion = with_recorded_metric(client, current_champion(client, name), space.metric)
            if champion is not None and champion.version == version.version:
                return True, version.tags.get("promotion", "").partition(": ")[2] or "champion", True
            is_champion, reason = decide(policy, space.metric, space.mode, value, champion)
            if not is_champion or set_alias(client, name, CHAMPION, version.version, held=champion):
                return is_champion, reason, False
    raise RuntimeError(f"the champion of {name} kept changing while this sweep promoted: resume the sweep to promote")


def set_alias(client: MlflowClient, name: str, alias: str, version: str, held: Any = None) -> bool:
    """Point ``alias`` of ``name`` at ``version``; False if another process set it first.

    ``held``: the ``ModelVersion`` this process saw holding ``alias`` (None: none). MLflow's stores
    read, then insert or update: where two processes first set an alias at once, the second's insert
    fails (SQLite's or PostgreSQL's unique constraint). Whether the alias has moved since ``held``
    tells a lost race from a real failure, which is raised.
    """
    try:
        client.set_registered_model_alias(name, alias, version)
        return True
    except MlflowException:
        now = _alias_version(client, name, alias)
        if now is None or now == (held.version if held is not None else None):
            raise  # nobody else moved it: a real failure
        return False


def _alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return client.get_model_version_by_alias(name, alias).version
    except MlflowException:
        return None


def model_card(
    space: SearchSpace,
    loss: str,
    version: Any,
    info: dict[str, Any],
    hyperparameters: dict[str, str],
    evaluation: Any | None,
) -> str:
    """The markdown model card of one champion (``evaluation``: an ``Evaluation``, or None if the
    champion has not been evaluated yet)."""
    title = LOSS_TITLES[loss]
    lines = [
        f"# Model card: {version.name} v{version.version}",
        "",
        f"The best **{title}** (`{loss}`) model of the ovatune `{space.name}` sweep `{info.get('sweep')}` "
        f"(trial {info.get('trial_number')}), chosen by validation `{selection_metric(version, space)}`.",
        "",
        "## Data",
        f"- Dataset: `{info['dataset']}`; {len(info['class_names'])} classes: "
        + ", ".join(f"`{c}`" for c in info["class_names"][:20])
        + (" …" if len(info["class_names"]) > 20 else ""),
        f"- Input: raw values of shape {tuple(info['raw_input_shape'])} per example "
        f"(preprocessing `{info['preprocessing']}` is part of the model).",
        "",
        "## Loss",
        f"- Loss: {title}. Outputs: `probabilities` (the loss's own probabilities), `confidence` "
        "(max probability), `prediction` (argmax) and `none_of_the_above`.",
        "",
        "## Hyperparameters",
        *[f"- `{k}` = {v}" for k, v in sorted(hyperparameters.items())],
        "",
        "## None of the above",
        f"- Threshold on confidence: **{info['threshold']:.6g}**: {info['threshold_rule']} "
        f"({info['validation_kept']:.1%} kept). `none_of_the_above` is true when confidence < threshold.",
        "",
        "## Evaluation",
    ]
    if evaluation is None:
        lines.append(f"- Not evaluated yet: run `ovatune evaluate {space.name}`.")
    else:
        lines.append("- Test: " + ", ".join(f"{k} {v:.4f}" for k, v in evaluation.test.items()))
        for name, values in evaluation.ood.items():
            lines.append(
                f"- OOD `{name}`: AUROC {values['auroc']:.4f}, AUPRC {values['auprc']:.4f}, "
                f"mean confidence {values['mean_confidence']:.3f}"
            )
        if evaluation.shift:
            lines += ["", "| shift intensity | mean accuracy | mean ECE |", "|---|---|---|"]
            for level in evaluation.shift_levels:
                rows = [r for r in evaluation.shift if r["intensity"] == level]
                if rows:
                    label = "test" if level == 0 else str(level)
                    accuracy = np.mean([r["accuracy"] for r in rows])
                    ece = np.mean([r["ece"] for r in rows])
                    lines.append(f"| {label} | {accuracy:.4f} | {ece:.4f} |")
            lines.append(f"\n(means over {len({r['corruption'] for r in evaluation.shift})} corruptions)")
    return "\n".join(lines) + "\n"
