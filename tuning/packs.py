"""The driver's view of packs: each member of a pack's Tune trial seen as the trial it stands for.

A pack (``--pack K``; ``trainables.pack_trial``) is one Tune trial that trains K trials of one loss
together and reports each member's result inside its own (``PACK_KEY``). Everything the driver does
per trial (its MLflow run, the progress line, the searcher's report to Optuna, promotion) goes
through this module's views, so that a member is handled exactly as the trial it stands for:

    members_of(trial)       a Tune trial's trials: itself, or a MemberTrial per member of a pack
    member_results(result)  a pack result's member results (trial number -> result)
    trial_results(results)  a job's Tune results with each pack's members as results of their own
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ray.tune import Checkpoint, Result

from trainables.pack_format import PACK_KEY, member_dir

# A pack result's bookkeeping that every member's result carries as its own.
_SHARED = ("training_iteration", "time_total_s", "timestamp", "time_since_restore", "iterations_since_restore",
           "pid", "done")  # fmt: skip


def is_pack(config: dict[str, Any]) -> bool:
    return PACK_KEY in config


def member_config(config: dict[str, Any], member: dict[str, Any]) -> dict[str, Any]:
    """A member's trial config: the pack's shared settings with the member's own."""
    return {**{k: v for k, v in config.items() if k != PACK_KEY}, **member}


def member_results(result: dict[str, Any] | None, with_shared: bool = True) -> dict[int, dict[str, Any]]:
    """Each member's result in a pack's ``result`` (trial number -> result; empty before the first),
    with the pack's bookkeeping (``training_iteration``, ...) or (``with_shared`` False) as the member
    reported it."""
    if not result or not result.get(PACK_KEY):
        return {}
    shared = {key: result[key] for key in _SHARED if key in result} if with_shared else {}
    return {int(number): {**shared, **member} for number, member in json.loads(result[PACK_KEY]).items()}


class MemberTrial:
    """One member of a pack's Tune trial, as a Tune ``Trial`` of its own would look to the driver.

    Its ``trial_id`` is the pack's with ``/<trial number>``; its status, paths and error are the
    pack's; its last result and checkpoint are its own part of the pack's.
    """

    def __init__(self, pack: Any, member: dict[str, Any]):
        self.pack = pack
        self.config = member_config(pack.config, member)
        self.number = int(member["trial_number"])
        self.trial_id = f"{pack.trial_id}/{self.number}"

    @property
    def last_result(self) -> dict[str, Any]:
        return member_results(self.pack.last_result).get(self.number, {})

    @property
    def ended(self) -> bool:
        """Whether this member ended before its pack (diverged, or stopped by the scheduler)."""
        return bool(self.last_result.get("ended"))

    @property
    def checkpoint(self) -> Checkpoint | None:
        return member_checkpoint(self.pack.checkpoint, self.number)

    @property
    def status(self) -> str:
        return "TERMINATED" if self.ended else self.pack.status

    def __getattr__(self, name: str) -> Any:  # local_path, path, get_error: the pack's
        return getattr(self.pack, name)


def members_of(trial: Any) -> list[Any]:
    """The trials a Tune trial stands for: itself, or each member of a pack."""
    if not is_pack(trial.config):
        return [trial]
    return [MemberTrial(trial, member) for member in trial.config[PACK_KEY]]


def member_checkpoint(checkpoint: Checkpoint | None, number: int) -> Checkpoint | None:
    """Member ``number``'s trial checkpoint inside a pack's checkpoint (None where it has none: it ended)."""
    if checkpoint is None:
        return None
    path = f"{checkpoint.path.rstrip('/')}/{member_dir(number)}"
    info = checkpoint.filesystem.get_file_info(path)
    return Checkpoint(path, checkpoint.filesystem) if info.type.name == "Directory" else None


def trial_results(results: Iterable[Result] | None) -> list[Result]:
    """A job's Tune results, each pack's replaced by one result per member: its own metrics (its last
    result, with ``config``), its own checkpoint (the one it had when the scheduler stopped it; none
    when it diverged), the pack's error unless it had ended before, the pack's path."""
    expanded = []
    for result in results or []:
        config = result.config or {}
        if not is_pack(config):
            expanded.append(result)
            continue
        last = member_results(result.metrics)
        for member in config[PACK_KEY]:
            number = int(member["trial_number"])
            metrics = {**last.get(number, {}), "config": member_config(config, member)}
            own = last.get(number, {})
            checkpoint = None if own.get("diverged") else member_checkpoint(result.checkpoint, number)
            error = None if own.get("ended") else result.error  # it ended before its pack (failed, say)
            expanded.append(Result(metrics=metrics, checkpoint=checkpoint, error=error, path=result.path))
    return expanded
