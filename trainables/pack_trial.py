"""A pack's Tune trial: K trials of one loss trained together (``trainables.pack``), reported as K trials.

A pack's config is the job's shared settings plus ``pack``: each member's own part (its sampled
hyperparameters, ``loss`` and ``trial_number``). Every epoch the pack reports one Tune result whose
``PACK_KEY`` holds, per member (by trial number), exactly the result that member's trial would have
reported alone (``trainables.train.train_loop``): metrics, ``diverged`` and ``stop_reason``, the
data it trained on with its first result, the history a resume replays. A member that has ended
(diverged, or stopped by the scheduler: ``trainables.pack_stops``) leaves the pack and keeps its
final result there, marked ``ended``; the driver (``tuning.packs``) turns each member's results
into that trial's MLflow run, searcher report and promotion candidate.

A pack's checkpoint holds one ordinary trial checkpoint per member (``member-<trial number>/``,
each with its SHA-256 file): its newest, which for a member the scheduler stopped is the one it
had then, as a trial stopped alone keeps its last; a diverged member has none. ``pack.json`` holds
the epoch and the final result of each member that has ended. A resumed pack starts every member
still training from the newest of its checkpoints in which all of them are intact, so they go on
in step.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from trainables.checkpoint import newest_intact, read_state, save_checkpoint
from trainables.data.augment import AUGMENTATIONS
from trainables.losses import get_loss
from trainables.models import build_classifier
from trainables.pack import Pack, fit_pack_epoch
from trainables.pack_format import PACK_KEY, PACK_STATE, member_dir
from trainables.system_metrics import SystemMeter
from trainables.train import cached_dataset, training_provenance, validation_metrics, validation_split
from trainables.trial_config import setting, upgraded
from trainables.trial_metrics import REPLAY_KEY, SELECTION_METRICS


def member_configs(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Each member's full trial config: the pack's shared settings with the member's own."""
    shared = {key: value for key, value in config.items() if key != PACK_KEY}
    return [upgraded({**shared, **member}) for member in config[PACK_KEY]]


def train_pack_loop(
    config: dict[str, Any],
    ray_api: Any,
    checkpoint: Any,
    device: torch.device,
    placement: dict[str, str],
    stopped: Callable[[], dict[int, dict[str, Any]]] | None = None,
) -> None:
    """Train the pack ``config`` describes from ``checkpoint`` (or from scratch), reporting every epoch
    (arguments as ``trainables.train.train_loop``'s; a pack trains in one process).

    Args:
        stopped: asked before the first epoch and after each report: the members the scheduler has
            stopped, each with the result it was stopped on (trial number -> result;
            ``trainables.pack_stops``); None: the scheduler stops no member.
    """
    saved = Path(tempfile.mkdtemp(prefix="ovatune-pack-"))  # the next checkpoint: each member's newest
    try:
        _train_pack(config, ray_api, checkpoint, device, placement, stopped or dict, saved)
    finally:
        shutil.rmtree(saved, ignore_errors=True)


# What a member's result carries once (its first result, a resume's first): not part of its final result.
_ONCE = ("data_provenance", "checkpoint_fallback", REPLAY_KEY)


def _train_pack(config, ray_api, checkpoint, device, placement, stopped, saved: Path) -> None:
    members = member_configs(config)
    first = members[0]
    torch.set_num_threads(int(setting(first, "threads")))
    data = cached_dataset(first)
    members = [{**c, **data.model_settings} for c in members]
    validation_examples = validation_split(data, first)
    train, val = data.train.to(device), validation_examples.to(device)
    loss = get_loss(first["loss"])
    augment = AUGMENTATIONS[data.augmentation] if data.augmentation else None
    numbers = [int(c["trial_number"]) for c in members]
    epochs = int(first["epochs"])

    start_epoch, ended, states, once = 0, {}, None, {"data_provenance": training_provenance(first)}
    histories: dict[int, list[dict[str, float]]] = {n: [] for n in numbers}
    if checkpoint is not None:
        start_epoch, ended, states, checkpoint, problems = resume_pack(checkpoint, ray_api.Checkpoint, numbers, device)
        if checkpoint is not None:  # each member's checkpoint as it was: a member stopped later keeps it
            with checkpoint.as_directory() as directory:
                for number in numbers:
                    if (Path(directory) / member_dir(number)).is_dir():
                        shutil.copytree(Path(directory) / member_dir(number), saved / member_dir(number))
        if problems:
            resumed = f"resuming from epoch {start_epoch}" if states else "training again from scratch"
            once["checkpoint_fallback"] = "; ".join(problems) + f"; {resumed}"
            print(f"ovatune: warning: {once['checkpoint_fallback']}", file=sys.stderr, flush=True)
    # Stopped by the scheduler after this checkpoint (a lost node, a restarted driver): they end
    # with the result they were stopped on, and keep the checkpoint they had then.
    for number, result in stopped().items():
        if number in numbers and number not in ended:
            ended[number] = {k: v for k, v in result.items() if k not in _ONCE}
    training = [k for k, n in enumerate(numbers) if n not in ended]
    if not training:  # every member has ended: nothing to train
        ray_api.report({"epoch": start_epoch, **best_of([]),
                        PACK_KEY: json.dumps({n: {**r, "ended": 1} for n, r in ended.items()})})  # fmt: skip
        return
    models, optimizer_states = [], []
    for k in training:
        torch.manual_seed(int(members[k]["seed"]))
        model = build_classifier(data.input_shape, data.num_classes, members[k]).to(device)
        if states:
            state, meta = states[numbers[k]]
            model.load_state_dict(state["model"])
            optimizer_states.append(state["optimizer"])
            histories[numbers[k]] = meta.get("history", [])
        models.append(model)
    results: dict[int, dict[str, Any]] = {n: {**result, "ended": 1} for n, result in ended.items()}
    replay = {n: {REPLAY_KEY: json.dumps(histories[n])} for n in numbers if histories[n]}
    if states and start_epoch >= epochs:  # finished before the driver stopped, not yet recorded: report it again
        for number, (_, meta) in states.items():
            results[number] = {**meta["metrics"], **once, **replay.get(number, {})}
        report = {
            "epoch": start_epoch,
            **best_of([m["metrics"] for _, m in states.values()]),
            PACK_KEY: json.dumps(results),
        }
        ray_api.report(report, checkpoint=checkpoint)
        return
    pack = Pack(models, [members[k] for k in training], optimizer_states if states else None)
    numbers_in_pack = [numbers[k] for k in training]

    checkpoint_every = int(setting(first, "checkpoint_every"))
    meter = SystemMeter(device)
    for epoch in range(start_epoch, epochs):
        pack.optimizer.set_epoch_lr(epoch)
        started = time.perf_counter()
        fitted = fit_pack_epoch(pack, loss, train, epoch, augment)
        fit_s = time.perf_counter() - started
        shared = {"fit_time_s": fit_s, **placement, **meter.read()}  # the pack's time and process: every member's
        probabilities = pack.probabilities(val.x, loss).cpu().numpy()  # (K, N, C): one pass for all members
        trained = []  # (member's place in the pack, its metrics)
        for k, (number, (train_loss, train_accuracy)) in enumerate(zip(numbers_in_pack, fitted)):
            metrics: dict[str, Any] = {"epoch": epoch + 1}
            stop_reason = None if math.isfinite(train_loss) else f"non-finite training loss ({train_loss})"
            if stop_reason is None:
                validation, stop_reason = validation_metrics(probabilities[k], validation_examples.y)
                metrics.update(train_loss=train_loss, train_accuracy=train_accuracy, **validation,
                               learning_rate=float(pack.optimizer.lr[k]), diverged=0, **shared)  # fmt: skip
            if stop_reason is not None:  # as a lone trial reports it: undefined metrics as NaN
                metrics = {"epoch": epoch + 1, "train_loss": train_loss, **dict.fromkeys(SELECTION_METRICS, float("nan")),
                           "diverged": 1, "stop_reason": f"{stop_reason} in epoch {epoch + 1}"}  # fmt: skip
                ended[number] = metrics
                results[number] = {**metrics, **once, **replay.get(number, {}), "ended": 1}
                continue
            histories[number].append({k: v for k, v in metrics.items() if isinstance(v, (int, float))
                                      and math.isfinite(v)})  # fmt: skip
            results[number] = {**metrics, **once, **replay.get(number, {})}
            trained.append((k, metrics))
        report = {"epoch": epoch + 1, **best_of([m for _, m in trained]), PACK_KEY: json.dumps(results)}
        if not trained:  # every member has diverged: the pack ends, each member's result says why
            ray_api.report(report)
            return
        if (epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs:
            for number, metrics in ended.items():
                if metrics.get("diverged"):  # a diverged member has no checkpoint (a lone one keeps none)
                    shutil.rmtree(saved / member_dir(number), ignore_errors=True)
            for k, metrics in trained:
                folder = saved / member_dir(numbers_in_pack[k])
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir()
                model, optimizer = pack.member(k)  # an ordinary classifier and torch.optim optimizer
                save_checkpoint(folder, model, optimizer, epoch + 1, members[training[k]], data, metrics,
                                histories[numbers_in_pack[k]])  # fmt: skip
            (saved / PACK_STATE).write_text(json.dumps({"epoch": epoch + 1, "ended": ended}))
            ray_api.report(report, checkpoint=ray_api.Checkpoint.from_directory(saved))  # copied to storage
        else:
            ray_api.report(report)
        # The scheduler has decided on this epoch's results before report returns: its stopped
        # members end here, with this epoch's result as their last (a lone trial's last is its stop's).
        stops = stopped()  # the members stopped on this epoch's results (and before)
        for k, metrics in trained:
            if numbers_in_pack[k] in stops:
                ended[numbers_in_pack[k]] = metrics
        trained = [(k, metrics) for k, metrics in trained if numbers_in_pack[k] not in stops]
        if not trained:  # every member has ended: the pack ends (the scheduler stops it too)
            return
        once, replay = {}, {}
        results = {n: {**result, "ended": 1} for n, result in ended.items()}  # their final results stay
        if len(trained) < len(pack):  # the diverged and the stopped leave the pack: they cost nothing more
            pack.keep([k for k, _ in trained])
            training = [training[k] for k, _ in trained]
            numbers_in_pack = [numbers[k] for k in training]


def best_of(members: list[dict[str, Any]]) -> dict[str, float]:
    """Each selection metric's best value over the members still training (NaN when none is): the pack's
    own result carries them for Ray Tune, which expects its searcher's metric in every result, and for
    ``--verbose``'s table. The trials' own metrics are in ``PACK_KEY``."""
    best = {}
    for name, metric in SELECTION_METRICS.items():
        values = [m[name] for m in members if m.get(name) is not None and math.isfinite(m[name])]
        best[name] = (max(values) if metric.mode == "max" else min(values)) if values else float("nan")
    return best


def resume_pack(checkpoint: Any, checkpoint_type: Any, numbers: list[int], device: torch.device) -> tuple:
    """(epoch, the ended members' final results, each training member's (state, meta), the checkpoint
    they came from, problems): from the newest of the pack's checkpoints (Ray's latest, then the older
    ones it keeps) in which every member still training is intact; (0, {}, None, None, problems) when
    none is (start over)."""

    def read(directory: Path) -> tuple[int, dict[int, dict], dict[int, tuple]]:
        saved = json.loads((directory / PACK_STATE).read_text())
        ended = {int(n): r for n, r in saved["ended"].items()}
        states = {n: read_state(directory / member_dir(n), device) for n in numbers if n not in ended}
        return int(saved["epoch"]), ended, states

    found, candidate, problems = newest_intact(checkpoint, checkpoint_type, read)
    if found is None:
        return 0, {}, None, None, problems
    return *found, candidate, problems
