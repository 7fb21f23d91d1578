"""The scheduler's word to a pack: which of its members to stop early (``--scheduler asha`` with packs).

Ray Tune's schedulers decide on a Tune trial as a whole, and a pack is K trials in one Tune trial.
The driver's scheduler (``tuning.sweep.PerLossASHA``) decides on each member at its rungs as it
would on a trial of its own, and writes the members it stops to one named actor per sweep; the
pack asks after each report and drops them, so that a stopped member costs nothing more. The
answer is there in time: a function trainable's report returns only when the driver asks for its
next result, after the scheduler has decided on this one.

    member_stops(experiment)      the driver's handle (the actor lives as long as the driver)
    stopped_members(experiment)   the pack's question, or None when the sweep stops no member
"""

from __future__ import annotations

from collections.abc import Callable

import ray


def _actor_name(experiment: str) -> str:
    return f"ovatune-member-stops/{experiment}"


@ray.remote(num_cpus=0)
class MemberStops:
    """The members the scheduler has stopped, per pack (Tune trial id -> trial numbers)."""

    def __init__(self) -> None:
        self._stopped: dict[str, set[int]] = {}

    def stop(self, trial_id: str, numbers: list[int]) -> None:
        self._stopped.setdefault(trial_id, set()).update(numbers)

    def stopped(self, trial_id: str) -> list[int]:
        return sorted(self._stopped.get(trial_id, ()))


def member_stops(experiment: str) -> ray.actor.ActorHandle:
    """The driver's handle on experiment ``experiment``'s actor, created on first use."""
    return MemberStops.options(name=_actor_name(experiment), get_if_exists=True).remote()


def stopped_members(experiment: str, trial_id: str) -> Callable[[], set[int]] | None:
    """In pack ``trial_id``'s process: a function giving the trial numbers of the members the scheduler
    has stopped, or None when experiment ``experiment``'s scheduler stops no member (it made no actor
    before the trial started)."""
    try:
        actor = ray.get_actor(_actor_name(experiment))
    except ValueError:
        return None
    return lambda: set(ray.get(actor.stopped.remote(trial_id)))
