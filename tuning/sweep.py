"""The sweep: per loss, N trials of seeded Optuna random search, all run by one Ray Tune ``Tuner``.

Why one Tuner for the four losses: Ray Tune schedules the trials of all losses from one queue, so
every CPU/GPU slot stays busy until the whole sweep ends (running the losses one after another
would leave slots idle at the tail of each loss), and one experiment directory means one thing to
resume. :class:`PerLossSearch` keeps the losses statistically separate: each loss has its own
Optuna study with its own ``RandomSampler`` seed, so adding a loss or changing the concurrency
does not change the configurations another loss draws.
"""

from __future__ import annotations

import dataclasses
import pickle
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune.result import TRAINING_ITERATION
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from search_spaces import SearchSpace
from trainables.pack_format import PACK_KEY
from trainables.pack_stops import member_stops
from trainables.trial_config import check_overrides, upgraded
from trainables.trial_metrics import get_selection_metric
from tuning.engine import (
    SWEEP,
    Job,
    JobOutcome,
    JobPlan,
    TrialShape,
    name_job,
    planned_trainable,
    resume_job,
    start_job,
)
from tuning.options import SAMPLERS, SCHEDULERS
from tuning.packs import is_pack, member_results, members_of
from tuning.settings import Settings
from tuning.tracking import get_or_create_experiment, parent_runs


def tune_domains(space: SearchSpace) -> dict[str, tune.search.sample.Domain]:
    """The one place a search space's ranges become Ray Tune domains."""
    return {
        name: tune.loguniform(r.low, r.high) if r.log else tune.uniform(r.low, r.high)
        for name, r in space.ranges.items()
    }


def loss_seed(seed: int, loss: str) -> int:
    """A per-loss sampler seed that depends only on the sweep seed and the loss's name."""
    return zlib.crc32(f"{seed}/{loss}".encode())


class PerLossSearch(Searcher):
    """One Optuna study per loss, interleaved: trial i goes to the loss with the fewest trials so far.

    Every suggested config carries ``loss`` and ``trial_number`` (0..N−1 within the
    loss). The searcher is finished after ``trials_per_loss`` suggestions per loss. With ``pack``
    K > 1 each Tune trial is a pack (``trainables.pack_trial``): up to K consecutive trials of one
    loss, each drawn from its loss's study as it would be alone (the same configurations as
    ``pack`` 1 with the same seed), and each member's results reach its study as its own trial's.

    Args:
        space: the experiment's search space.
        losses: names from ``LOSS_TITLES`` to sweep.
        trials_per_loss: N.
        seed: sweep seed; each loss's sampler gets ``loss_seed(seed, loss)``.
        sampler: a key of ``tuning.options.SAMPLERS``: "random" (the paper's random search) or "tpe".
        pack: trials per Tune trial (K).
    """

    def __init__(self, space: SearchSpace, losses: list[str], trials_per_loss: int, seed: int, sampler: str = "random",
                 pack: int = 1):  # fmt: skip
        super().__init__(metric=space.metric, mode=space.mode)
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose from: {', '.join(SAMPLERS)}")
        self.losses = list(losses)
        self.trials_per_loss = trials_per_loss
        self.suggested = {loss: 0 for loss in self.losses}
        self.loss_of_trial: dict[str, str] = {}
        self.reported: dict[str, int] = {}  # trial id -> the last iteration handed to its loss's Optuna
        self.pack = pack
        self.searchers = {}
        distributions = OptunaSearch.convert_search_space(tune_domains(space))
        for loss in self.losses:
            self.searchers[loss] = OptunaSearch(
                space=distributions,
                metric=space.metric,
                mode=space.mode,
                sampler=SAMPLERS[sampler].make(seed=loss_seed(seed, loss)),
            )

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # metric, mode and space were fixed at construction

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        open_losses = [loss for loss in self.losses if self.suggested[loss] < self.trials_per_loss]
        if not open_losses:
            return Searcher.FINISHED
        loss = min(open_losses, key=lambda name: self.suggested[name])
        pack = self.__dict__.get("pack", 1)  # a searcher saved before packs: one trial per Tune trial
        if pack == 1:
            return self._suggest_one(loss, trial_id)
        members = []
        for _ in range(min(pack, self.trials_per_loss - self.suggested[loss])):
            member = self._suggest_one(loss, f"{trial_id}/{self.suggested[loss]}")
            if member is None or member == Searcher.FINISHED:
                break
            members.append(member)
        return {"loss": loss, PACK_KEY: members} if members else None

    def _suggest_one(self, loss: str, trial_id: str) -> dict[str, Any] | None:
        config = self.searchers[loss].suggest(trial_id)
        if config is None or config == Searcher.FINISHED:
            return config
        number = self.suggested[loss]
        self.suggested[loss] += 1
        self.loss_of_trial[trial_id] = loss
        return {**config, "loss": loss, "trial_number": number}

    def _trials(self, trial_id: str, result: dict | None) -> list[tuple[str, dict | None]]:
        """(trial id, its result) of each trial a Tune trial's result stands for: itself, or a pack's members."""
        if trial_id in self.loss_of_trial:
            return [(trial_id, result)]
        members = member_results(result)
        if not members:  # a pack that failed before its first result: each member failed
            return [(trial, None) for trial in self.loss_of_trial if trial.startswith(f"{trial_id}/")]
        return [(f"{trial_id}/{n}", members[n]) for n in members if f"{trial_id}/{n}" in self.loss_of_trial]

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        # A trial resumed after its node or the driver died reports again the iterations after its
        # checkpoint that Optuna already has; Optuna ignores them with a warning on the user's terminal.
        reported = self.__dict__.setdefault("reported", {})  # a searcher saved before this kept none
        step = result.get(TRAINING_ITERATION, 0)
        for trial, own in self._trials(trial_id, result):
            if step > reported.get(trial, 0) and not own.get("ended"):
                reported[trial] = step
                self.searchers[self.loss_of_trial[trial]].on_trial_result(trial, own)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        for trial, own in self._trials(trial_id, result):
            self.searchers[self.loss_of_trial[trial]].on_trial_complete(trial, own, error)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


@dataclass(frozen=True)
class SweepRequest:
    """What a user asks of one sweep: ``ovatune sweep``'s options, parsed and checked.

    Attributes:
        space: the experiment's search space.
        losses: the losses to sweep (keys of ``LOSS_TITLES``); a resume takes the stored sweep's.
        trials: trials per loss.
        seed: seeds each loss's sampler (with the loss name) and every trial's weights.
        max_concurrent: trials at once (default: as many as the cluster holds).
        cpus_per_trial, gpus_per_trial: per trial, or per worker of a multi-worker trial (default:
            the space's ``resources``).
        workers_per_trial: Ray Train workers per trial (DDP; default: the space's, else 1).
        scheduler, sampler: keys of ``tuning.options.SCHEDULERS`` and ``SAMPLERS``.
        address: the Ray cluster to run on ("auto" inside one); None starts a local Ray.
        resume: continue the sweep ``name`` (default: the latest of this experiment) where it
            stopped; its original settings apply, finished trials are kept.
        name: the sweep's name (default for a new sweep: ``tuning.engine.new_job_name``).
        data_dir: where the dataset's files are (default: the dataset's own location).
        overrides: replace fixed settings (e.g. ``{"epochs": 2}`` for a smoke test).
        verbose: 0 silent, 1 one progress line (``tuning.progress``), 2 Ray Tune's table of every trial.
        promote: the promotion policy after the fit (a key of ``tuning.options.POLICIES``), and
        smoke_test: whether it is a smoke test (its versions are tagged so): both are stored with
            the sweep, so that its resume promotes as it was started.
        pack: trials of a loss trained together in one worker (``trainables.pack``; None:
            :func:`default_pack`).
        asked: what the user asked for explicitly, as the sweep's parent-run params name it
            (``losses``, ``trials_per_loss``, ``seed``, ``sampler``, ``scheduler``, ``metric`` and
            ``--set`` keys): a resume that contradicts the stored sweep is refused, naming each difference.
    """

    space: SearchSpace
    losses: list[str]
    trials: int
    seed: int = 0
    max_concurrent: int | None = None
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None
    workers_per_trial: int | None = None
    scheduler: str = "fifo"
    sampler: str = "random"
    address: str | None = None
    resume: bool = False
    name: str | None = None
    data_dir: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    verbose: int = 1
    asked: dict[str, Any] = field(default_factory=dict)
    promote: str = "better"
    smoke_test: bool = False
    pack: int | None = None


def selected_by(space: SearchSpace, metric: str) -> SearchSpace:
    """``space`` with ``metric`` (a key of ``SELECTION_METRICS``) and its mode as the selection metric."""
    return dataclasses.replace(space, metric=metric, mode=get_selection_metric(metric).mode)


def run_sweep(request: SweepRequest, settings: Settings, prepare: Callable[[], None] | None = None) -> JobOutcome:
    """Run (or resume) the sweep ``request`` describes, storing it under ``settings``' home and store;
    ``prepare`` loads, while Ray starts, what the caller does after the trials (promotion).

    Raises:
        FileNotFoundError: ``resume`` with no sweep to resume.
        ClusterCannotRun: trials of the requested size can never run on the Ray cluster.
        InvalidSetting: an override the trials would not accept (see ``trainables.trial_config``).
        ValueError: a resume that contradicts the stored sweep; a new sweep whose name exists.
    """
    from mlflow.tracking import MlflowClient

    space = request.space
    check_overrides(space, request.overrides)  # before Ray starts
    workers = request.workers_per_trial or int(space.resources.get("workers", 1))
    gpus = request.gpus_per_trial if request.gpus_per_trial is not None else float(space.resources.get("gpu", 0))
    fixed = {**space.fixed, **request.overrides}
    pack = min(request.pack or default_pack(space, workers, gpus, fixed), request.trials)
    if not request.resume:
        _check_pack(pack, workers, fixed)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one "study created" line per loss is noise
    client = MlflowClient(settings.tracking_uri)
    experiment_id = get_or_create_experiment(client, space.name, space.description, settings)
    name = name_job(SWEEP, space, settings, client, experiment_id, request.name, request.resume)
    shape = TrialShape(request.cpus_per_trial, request.gpus_per_trial, request.workers_per_trial)
    if request.resume:  # as it was started: its metric, losses, trials, settings and trial shape
        return resume_job(SWEEP, name, space, settings, client, experiment_id, request.address, shape,
                          default_metric=space.metric, check=lambda stored: _check_resume_matches(name, stored, request.asked),
                          prepare=prepare)  # fmt: skip

    trainable, resources, slots = planned_trainable(space, request.address, {}, shape, prepare)
    param_space = {
        **space.fixed,
        **request.overrides,
        "experiment": space.name,
        "seed": request.seed,
        "data_seed": 0,
        "data_dir": request.data_dir,
        "threads": max(1, int(resources.cpus)),
        "workers_per_trial": resources.workers,
        **({"cpus_per_worker": resources.cpus, "gpus_per_worker": resources.gpus} if resources.workers > 1 else {}),
    }
    if param_space.get("sync_batchnorm") and resources.workers > 1 and not resources.gpus:
        raise ValueError("sync_batchnorm=true needs GPU workers (PyTorch's SyncBatchNorm runs on CUDA only); "
                         "leave it out on the CPU")  # fmt: skip
    losses = list(request.losses)
    sweep_params = {"losses": ",".join(losses), "trials_per_loss": request.trials, "seed": request.seed, "sampler": request.sampler,
                    "scheduler": request.scheduler, "metric": space.metric, "mode": space.mode,
                    "promote": request.promote, "smoke_test": request.smoke_test, "pack": pack,
                    **param_space}  # fmt: skip
    parents = parent_runs(client, experiment_id, name, losses, sweep_params)
    job = Job(
        SWEEP, name, experiment_id, parents, space.metric, space.mode, {k: str(v) for k, v in sweep_params.items()}
    )
    plan = JobPlan(
        searcher=PerLossSearch(space, losses, request.trials, request.seed, request.sampler, pack),
        num_samples=-(-request.trials // pack) * len(losses),  # Tune trials: packs of up to K trials
        per_loss=request.trials,
        columns=["loss", "trial_number", *space.ranges],
        param_space=param_space,
        scheduler=_scheduler(request.scheduler, space, param_space),
        max_concurrent=request.max_concurrent,
    )
    return start_job(job, plan, trainable, resources, slots, settings, request.verbose)


def default_pack(space: SearchSpace, workers: int, gpus: float, fixed: dict[str, Any]) -> int:
    """The pack size of a sweep that does not ask (``--pack``): the space's measured ``pack_on_cpu``
    for trials on CPUs, with either scheduler (ASHA stops members one by one: ``PerLossASHA``); 1 for
    trials on GPUs (not measured there yet), for multi-worker trials and where ``fixed`` (the space's
    settings with ``--set``'s) asks for micro-batches or ``torch.compile``, which packs do not do."""
    if gpus > 0 or workers > 1 or fixed.get("micro_batch_size") or fixed.get("compile"):
        return 1
    return space.pack_on_cpu


def _check_pack(pack: int, workers: int, fixed: dict[str, Any]) -> None:
    """Refuse, before Ray starts, packs this version cannot run.

    Raises:
        ValueError: naming the option that conflicts and what to do.
    """
    if pack == 1:
        return
    if workers > 1:
        raise ValueError(f"--pack {pack} trains its trials in one worker: use --pack 1 with --workers-per-trial")
    for key in ("micro_batch_size", "compile"):
        if fixed.get(key):
            raise ValueError(f"--pack {pack} takes whole batches without torch.compile: use --pack 1 with {key}")


# Stored with a sweep only since a later version: an older sweep's resume takes what it is asked.
RECORDED_LATER = ("promote", "smoke_test", "pack")


def _check_resume_matches(name: str, stored: dict[str, str], asked: dict[str, Any]) -> None:
    """Refuse a resume whose explicit options differ from how sweep ``name`` was started.

    Raises:
        ValueError: naming each option, what was asked and what the sweep has.
    """
    differences = [
        f"{key} {value} (the sweep has {stored[key] if key in stored else 'none'})"
        for key, value in asked.items()
        if stored.get(key) != str(value) and (key in stored or key not in RECORDED_LATER)
    ]
    if differences:
        raise ValueError(f"--resume continues sweep {name!r} as it was started, but this command asks for "
                         f"{'; '.join(differences)}: drop those options to resume it, or start a new sweep "
                         "without --resume")  # fmt: skip


class PerLossASHA(tune.schedulers.FIFOScheduler):
    """Asynchronous successive halving within each loss: trials only compete with their own loss.

    One ``ASHAScheduler`` per loss, created on first sight. A single ASHA over the whole sweep would
    stop every trial of a loss that merely learns more slowly early on (one-vs-all DM does),
    leaving that loss without a champion.

    A pack's members (``tuning.packs``) are trials of their own here: ASHA sees each member's result
    at its rungs and stops members one by one; each stop, with the result it was made on, is written
    to the sweep's ``trainables.pack_stops`` actor, and the pack drops the member. The pack itself
    stops when every member still training is stopped. After a restart of the driver the stops are
    read back from each pack's last result (its members marked ended there, not diverged).
    """

    def __init__(self, metric: str, mode: str, max_t: int):
        super().__init__()
        self._settings = {"time_attr": "training_iteration", "metric": metric, "mode": mode, "max_t": max_t,
                          "grace_period": max(1, max_t // 10)}  # fmt: skip
        self._by_loss: dict[str, tune.schedulers.ASHAScheduler] = {}
        self._stopped: dict[str, dict[str, Any]] = {}  # member trial id -> the member's result it was stopped on
        self._stops: dict[str, Any] = {}  # experiment name -> its pack_stops actor

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_stops": {}}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({"_stopped": {}, **state})  # pickled by a sweep before packs: no stops

    def _of(self, trial) -> tune.schedulers.ASHAScheduler:
        loss = upgraded(trial.config)["loss"]
        if loss not in self._by_loss:
            self._by_loss[loss] = tune.schedulers.ASHAScheduler(**self._settings)
        return self._by_loss[loss]

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # fixed at construction

    def _tell_pack(self, trial, members: list) -> None:
        """Write the stops of ``members`` of pack ``trial`` to its sweep's actor (made on first use),
        before the pack's next epoch: its report returns only when Tune asks for its next result."""
        experiment = trial.experiment_dir_name
        if experiment not in self._stops:
            self._stops[experiment] = member_stops(experiment)
        stops = {m.number: self._stopped[m.trial_id] for m in members}
        ray.get(self._stops[experiment].stop.remote(trial.trial_id, stops))

    def on_trial_add(self, tune_controller, trial) -> None:
        if not is_pack(trial.config):
            return self._of(trial).on_trial_add(tune_controller, trial)
        own = member_results(trial.last_result, with_shared=False)  # a restored pack's: who had ended
        for member in members_of(trial):
            mine = own.get(member.number, {})
            if mine.get("ended") and not mine.get("diverged"):  # stopped before the driver restarted
                self._stopped[member.trial_id] = mine
            if member.trial_id not in self._stopped:
                self._of(member).on_trial_add(tune_controller, member)
        self._tell_pack(trial, [m for m in members_of(trial) if m.trial_id in self._stopped])  # makes the actor

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if not is_pack(trial.config):
            return self._of(trial).on_trial_result(tune_controller, trial, result)
        own, raw = member_results(result), member_results(result, with_shared=False)
        training = [m for m in members_of(trial) if m.number in own and not own[m.number].get("ended")]
        stops = []
        for member in training:
            if member.trial_id not in self._stopped:
                decision = self._of(member).on_trial_result(tune_controller, member, own[member.number])
                if decision != self.STOP or own[member.number]["epoch"] >= member.config["epochs"]:
                    continue  # at max_t ASHA says STOP to a trial that ends anyway
                self._of(member).on_trial_complete(tune_controller, member, own[member.number])  # as Tune does
                self._stopped[member.trial_id] = raw[member.number]
            stops.append(member)  # or again: its pack started again before it saw the stop
        if training and len(stops) == len(training):
            return self.STOP
        if stops:
            self._tell_pack(trial, stops)
        return self.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if not is_pack(trial.config):
            return self._of(trial).on_trial_complete(tune_controller, trial, result)
        own = member_results(result)
        for member in members_of(trial):
            if member.trial_id in self._stopped:
                continue  # completed when it was stopped
            if member.number in own and not own[member.number].get("ended"):
                self._of(member).on_trial_complete(tune_controller, member, own[member.number])
            else:  # diverged before its pack ended (ASHA saw its last finite result), or never reported
                self._of(member).on_trial_remove(tune_controller, member)

    def on_trial_remove(self, tune_controller, trial) -> None:
        for member in members_of(trial):
            if member.trial_id not in self._stopped:
                self._of(member).on_trial_remove(tune_controller, member)

    def debug_string(self) -> str:
        return "per-loss ASHA: " + "; ".join(f"{loss}: {s.debug_string()}" for loss, s in self._by_loss.items())


def per_loss_asha(space: SearchSpace, epochs: int) -> PerLossASHA:
    """``--scheduler asha``: ASHA within each loss, by the sweep's selection metric, up to ``epochs``."""
    return PerLossASHA(space.metric, space.mode, max_t=epochs)


def _scheduler(name: str, space: SearchSpace, config: dict[str, Any]):
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose from: {', '.join(SCHEDULERS)}")
    return SCHEDULERS[name].make(space, int(config["epochs"]))
