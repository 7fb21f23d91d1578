"""The scheduler's word to a pack: which of its members to stop early (``--scheduler asha`` with packs).

Ray Tune's schedulers decide on a Tune trial as a whole, and a pack is K trials in one Tune trial.
The driver's scheduler (``tuning.sweep.PerLossASHA``) decides on each member at its rungs as it
would on a trial of its own, and writes the members it stops, each with the result it was stopped
on, to one named actor per sweep (on the driver's node; it lives as long as the driver). The pack
asks after each report and drops them, so that a stopped member costs nothing more. The answer is
there in time: a function trainable's report returns only when the driver asks for its next
result, after the scheduler has decided on this one. A pack that starts again (a lost node, a
restarted driver) asks before its first epoch too: a member stopped after the checkpoint it
resumes from ends with the result it was stopped on, not trained again.

    member_stops(experiment)      the driver's handle (the actor lives as long as the driver)
    stopped_members(experiment)   the pack's question, or None when the sweep stops no member
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy


def _actor_name(experiment: str) -> str:
    return f"ovatune-member-stops/{experiment}"


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class MemberStops:
    """The members the scheduler has stopped, per pack (Tune trial id -> trial number -> the result
    it was stopped on). Restarted if its process dies; the scheduler writes its stops again."""

    def __init__(self) -> None:
        self._stopped: dict[str, dict[int, dict[str, Any]]] = {}

    def stop(self, trial_id: str, results: dict[int, dict[str, Any]]) -> None:
        stopped = self._stopped.setdefault(trial_id, {})
        for number, result in results.items():
            stopped.setdefault(number, result)  # the first stop's result is the member's last

    def stopped(self, trial_id: str) -> dict[int, dict[str, Any]]:
        return self._stopped.get(trial_id, {})


def member_stops(experiment: str) -> ray.actor.ActorHandle:
    """The driver's handle on experiment ``experiment``'s actor, created on first use on this node."""
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return MemberStops.options(name=_actor_name(experiment), get_if_exists=True, scheduling_strategy=here).remote()


def stopped_members(experiment: str, trial_id: str) -> Callable[[], dict[int, dict[str, Any]]] | None:
    """In pack ``trial_id``'s process: a function giving the members the scheduler has stopped (trial
    number -> the result it was stopped on), or None when experiment ``experiment``'s scheduler stops
    no member (it made no actor before the trial started)."""
    try:
        actor = ray.get_actor(_actor_name(experiment))
    except ValueError:
        return None
    return lambda: ray.get(actor.stopped.remote(trial_id))
