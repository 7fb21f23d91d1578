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
import logging
import os
import pickle
import re
import secrets
import signal
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from search_spaces import SearchSpace
from trainables.loss_names import LOSS_TITLES
from trainables.trial_config import check_overrides, upgraded
from trainables.trial_metrics import get_selection_metric
from tuning.cluster import TrialResources, init_ray, plan_trial_resources
from tuning.options import SAMPLERS, SCHEDULERS
from tuning.progress import SweepProgress
from tuning.settings import Settings
from tuning.timeline import mark
from tuning.tracking import TAG_LOSS, MlflowTrialCallback, find_runs, get_or_create_experiment, parent_runs


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
    loss). The searcher is finished after ``trials_per_loss`` suggestions per loss.

    Args:
        space: the experiment's search space.
        losses: names from ``LOSS_TITLES`` to sweep.
        trials_per_loss: N.
        seed: sweep seed; each loss's sampler gets ``loss_seed(seed, loss)``.
        sampler: a key of ``tuning.options.SAMPLERS``: "random" (the paper's random search) or "tpe".
    """

    def __init__(self, space: SearchSpace, losses: list[str], trials_per_loss: int, seed: int, sampler: str = "random"):
        super().__init__(metric=space.metric, mode=space.mode)
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose from: {', '.join(SAMPLERS)}")
        self.losses = list(losses)
        self.trials_per_loss = trials_per_loss
        self.suggested = {loss: 0 for loss in self.losses}
        self.loss_of_trial: dict[str, str] = {}
        self.searchers = {}
        distributions = OptunaSearch.convert_search_space(tune_domains(space))
        for loss in self.losses:
            sampler_cls = optuna.samplers.RandomSampler if sampler == "random" else optuna.samplers.TPESampler
            self.searchers[loss] = OptunaSearch(
                space=distributions,
                metric=space.metric,
                mode=space.mode,
                sampler=sampler_cls(seed=loss_seed(seed, loss)),
            )

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # metric, mode and space were fixed at construction

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        open_losses = [loss for loss in self.losses if self.suggested[loss] < self.trials_per_loss]
        if not open_losses:
            return Searcher.FINISHED
        loss = min(open_losses, key=lambda name: self.suggested[name])
        config = self.searchers[loss].suggest(trial_id)
        if config is None or config == Searcher.FINISHED:
            return config
        number = self.suggested[loss]
        self.suggested[loss] += 1
        self.loss_of_trial[trial_id] = loss
        return {**config, "loss": loss, "trial_number": number}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.loss_of_trial:
            self.searchers[self.loss_of_trial[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.loss_of_trial:
            self.searchers[self.loss_of_trial[trial_id]].on_trial_complete(trial_id, result, error)

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
        name: the sweep's name (default for a new sweep: ``new_sweep_name``).
        data_dir: where the dataset's files are (default: the dataset's own location).
        overrides: replace fixed settings (e.g. ``{"epochs": 2}`` for a smoke test).
        verbose: 0 silent, 1 one progress line (``tuning.progress``), 2 Ray Tune's table of every trial.
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


@dataclass
class SweepOutcome:
    """What a finished sweep hands to promotion."""

    name: str
    path: Path
    results: tune.ResultGrid | None  # None when a second signal stopped it at once
    experiment_id: str
    parents: dict[str, str]  # loss -> parent run id
    losses: list[str]
    metric: str  # the validation metric that selects its best trials (a resumed sweep keeps its own)
    interrupted: int | None = None  # the signal that stopped it before every trial finished, if one did


def selected_by(space: SearchSpace, metric: str) -> SearchSpace:
    """``space`` with ``metric`` (a key of ``SELECTION_METRICS``) and its mode as the selection metric."""
    return dataclasses.replace(space, metric=metric, mode=get_selection_metric(metric).mode)


SWEEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def new_sweep_name(experiment: str) -> str:
    """``<experiment>-<date>-<time>-<6 hex digits>``: the random part keeps two sweeps started in the
    same second apart, on one machine or on several sharing a tracking server."""
    return f"{experiment}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def check_sweep_name(name: str) -> str:
    """``name`` if it can name a sweep: letters, digits, ``.``, ``_`` and ``-``, no path separators,
    no ``..`` (it becomes a directory under the home and an MLflow tag).

    Raises:
        ValueError: a name that is not one.
    """
    if not SWEEP_NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"invalid sweep name {name!r}: use up to 100 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit (no '/', no '..')")  # fmt: skip
    return name


def latest_sweep(settings: Settings, experiment: str) -> str | None:
    """Name of the most recently started sweep of ``experiment`` in this home, if any."""
    candidates = sorted(settings.ray_results.glob(f"{experiment}-*"), key=lambda p: p.stat().st_mtime)
    return candidates[-1].name if candidates else None


def run_sweep(request: SweepRequest, settings: Settings) -> SweepOutcome:
    """Run (or resume) the sweep ``request`` describes, storing it under ``settings``' home and store.

    Raises:
        FileNotFoundError: ``resume`` with no sweep to resume.
        ClusterCannotRun: trials of the requested size can never run on the Ray cluster.
        InvalidSetting: an override the trials would not accept (see ``trainables.trial_config``).
        ValueError: a resume that contradicts the stored sweep; a new sweep whose name exists.
    """
    from mlflow.tracking import MlflowClient

    space = request.space
    name, losses, max_concurrent = request.name, list(request.losses), request.max_concurrent  # resolved below
    check_overrides(space, request.overrides)  # before Ray starts
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one "study created" line per loss is noise

    settings.ray_results.mkdir(parents=True, exist_ok=True)
    if request.resume:
        name = name or latest_sweep(settings, space.name)
        if name is None or not tune.Tuner.can_restore(str(settings.ray_results / name)):
            raise FileNotFoundError(f"no sweep of {space.name!r} to resume under {settings.ray_results}")
    elif name is None:
        name = new_sweep_name(space.name)
    path = settings.ray_results / name

    def connect(stored: dict[str, str]) -> tuple[Any, TrialResources, int]:
        """Ray up and the trainable planned for it; ``stored``: a resumed sweep's parent-run params,
        whose trial shape (workers, per-worker resources) the restored trials keep."""
        return planned_trainable(space, request.address, stored, request.cpus_per_trial, request.gpus_per_trial,
                                 request.workers_per_trial)  # fmt: skip

    client = MlflowClient(settings.tracking_uri)
    experiment_id = get_or_create_experiment(client, space.name, space.description, settings)
    if not request.resume and (path.exists() or find_runs(client, experiment_id, kind="parent", sweep=name)):
        raise ValueError(f"a sweep named {name!r} already exists (in {settings.ray_results} or the MLflow store "
                         f"{settings.display_uri}); continue it with --resume --name {name}, or choose another --name")  # fmt: skip
    if request.resume:
        # The parent runs say which losses the sweep covers; the Tuner restores the rest.
        parents = {
            r.data.tags[TAG_LOSS]: r.info.run_id for r in find_runs(client, experiment_id, kind="parent", sweep=name)
        }
        losses = [loss for loss in LOSS_TITLES if loss in parents]
        if not losses:
            raise FileNotFoundError(
                f"sweep {name!r} has no runs in the MLflow store {settings.display_uri}; resume it with "
                "the --home and --tracking-uri it was started with"
            )
        stored = client.get_run(next(iter(parents.values()))).data.params
        _check_resume_matches(name, stored, request.asked)
        space = selected_by(space, stored.get("metric", space.metric))
        parents = parent_runs(client, experiment_id, name, losses, {})
        trainable, resources, slots = connect(stored)
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)
    else:
        trainable, resources, slots = connect({})
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
        if resources.workers > 1:
            # Tune sees only each trial's small driver: it would start every trial at once, each
            # waiting for its workers. Run as many as the cluster can hold workers for.
            max_concurrent = min(max_concurrent or slots, slots)
        sweep_params = {"losses": ",".join(losses), "trials_per_loss": request.trials, "seed": request.seed, "sampler": request.sampler,
                        "scheduler": request.scheduler, "metric": space.metric, "mode": space.mode, **param_space}  # fmt: skip
        parents = parent_runs(client, experiment_id, name, losses, sweep_params)
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                search_alg=PerLossSearch(space, losses, request.trials, request.seed, request.sampler),
                num_samples=request.trials * len(losses),
                max_concurrent_trials=max_concurrent,
                scheduler=_scheduler(request.scheduler, space, param_space),
                # saves seconds per short trial; a multi-worker trial's process owns its Ray Train
                # run, which must end with it (a stopped trial's reused process would keep it going)
                reuse_actors=resources.workers == 1,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(settings.ray_results),
                callbacks=[MlflowTrialCallback(settings.tracking_uri, experiment_id, name, parents)],
                checkpoint_config=tune.CheckpointConfig(num_to_keep=3),
                failure_config=tune.FailureConfig(max_failures=2),  # node loss: resume elsewhere
                verbose=min(request.verbose, 1),
                progress_reporter=progress_reporter(
                    request.verbose, space.metric, space.mode, request.trials, ["loss", "trial_number", *space.ranges]
                ),
            ),
        )
    mark("tuner built")
    results, signum = fit_interruptibly(tuner, slots)
    mark("trials done")
    return SweepOutcome(name, path, results, experiment_id, parents, losses, space.metric, signum)


def progress_reporter(
    verbose: int, metric: str, mode: str, per_loss: int, parameters: list[str]
) -> tune.ProgressReporter:
    """Verbosity 1: ovatune's one line (``tuning.progress.SweepProgress``; ``per_loss`` trials per
    loss); 2 (``--verbose``): Ray Tune's table of every trial (``parameters`` its columns)."""
    if verbose >= 2:
        columns = list(dict.fromkeys(["epoch", "train_loss", metric, "val_ece"]))
        return tune.CLIReporter(parameter_columns=parameters, metric_columns=columns, max_report_frequency=15)
    return SweepProgress(metric, mode, per_loss)


def planned_trainable(
    space: SearchSpace,
    address: str | None,
    stored: dict[str, Any],
    cpus_per_trial: float | None = None,
    gpus_per_trial: float | None = None,
    workers_per_trial: int | None = None,
) -> tuple[Any, TrialResources, int]:
    """Ray up (only once the checks that need no cluster have passed), and (the trainable with its
    per-trial resources, those resources, how many trials the cluster holds at once).

    The trial shape is what was asked, else what ``stored`` says (a resumed sweep's parent-run
    params, a replicated champion's config: ``workers_per_trial``, ``cpus_per_worker``,
    ``gpus_per_worker``), else the space's ``resources``.
    """
    workers = workers_per_trial or int(stored.get("workers_per_trial", space.resources.get("workers", 1)))
    cpus = cpus_per_trial if cpus_per_trial is not None else stored.get("cpus_per_worker")
    gpus = gpus_per_trial if gpus_per_trial is not None else stored.get("gpus_per_worker")
    requested = TrialResources(
        float(cpus if cpus is not None else space.resources.get("cpu", 1)),
        float(gpus if gpus is not None else space.resources.get("gpu", 0)),
        workers,
    )
    explicit = {key for key, value in (("cpus", cpus_per_trial), ("gpus", gpus_per_trial),
                                       ("workers", workers_per_trial)) if value is not None}  # fmt: skip
    init_ray(address, dashboard=workers > 1, meanwhile=lambda: _load_what_follows(space))
    from trainables.train import train_classifier

    resources, slots, notes = plan_trial_resources(requested, explicit, on_cluster=address is not None)
    for note in notes:
        print(f"ovatune: {note}", flush=True)
    return tune.with_resources(train_classifier, resources.tune_request()), resources, slots


def _load_what_follows(space: SearchSpace) -> None:
    """What the driver needs once Ray is up, loaded while it starts (about 5 s on 2 cores, otherwise
    one after the other): the trainable (torch, the model code), and what promotion needs after the
    fit (the dataset's loader module, MLflow's model logging)."""
    import trainables.train  # noqa: F401
    from trainables.data import import_loader
    from tuning.promote import prepare_model_logging

    import_loader(space.dataset)
    prepare_model_logging()


def fit_interruptibly(tuner: tune.Tuner, slots: int) -> tuple[tune.ResultGrid | None, int | None]:
    """``tuner.fit()`` under :class:`Interruption`: (the results, None when a second signal stopped it
    at once; the signal that stopped it early, None when every trial finished)."""
    # Ray Tune keeps only one trial pending when a custom searcher is used; with trials shorter than
    # a worker's start-up, the second slot then never gets a trial. Keep every slot fed.
    # On an autoscaling cluster the pending trials are also what makes the autoscaler launch nodes.
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(max(4, slots + 1)))
    with Interruption() as interruption:
        try:
            results = tuner.fit()
        except KeyboardInterrupt:  # the second signal: stopped at once
            results = None
    return results, interruption.signum


def _check_resume_matches(name: str, stored: dict[str, str], asked: dict[str, Any]) -> None:
    """Refuse a resume whose explicit options differ from how sweep ``name`` was started.

    Raises:
        ValueError: naming each option, what was asked and what the sweep has.
    """
    differences = [
        f"{key} {value} (the sweep has {stored[key] if key in stored else 'none'})"
        for key, value in asked.items()
        if stored.get(key) != str(value)
    ]
    if differences:
        raise ValueError(f"--resume continues sweep {name!r} as it was started, but this command asks for "
                         f"{'; '.join(differences)}: drop those options to resume it, or start a new sweep "
                         "without --resume")  # fmt: skip


def _quiet_interruption(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    quiet = ("Tuner.restore", "Stop signal received", "Trials did not complete", "Failed to fetch metrics")
    return not any(text in message for text in quiet)


class Interruption:
    """Ctrl-C (SIGINT) or SIGTERM during ``Tuner.fit``: stop cleanly once, at once the second time.

    The first signal asks Ray Tune to stop the way its own Ctrl-C handling does (SIGUSR1 is the
    signal Tune always listens to): trials stop, and the experiment state and the trials'
    checkpoints are saved, so ``--resume`` continues exactly. A second signal raises
    ``KeyboardInterrupt`` out of ``fit``: what was logged stays logged. ``signum`` tells the caller
    that the sweep did not finish (and which signal stopped it), so nothing half-trained is promoted.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Interruption:
        if threading.current_thread() is not threading.main_thread():
            return self  # signals reach the main thread only: a sweep run from a thread is stopped by its caller
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # this class is the handler
        # Tune's own words on stopping name its Python API (Tuner.restore) and its stop signal;
        # ovatune prints its own, with the command that resumes
        # (and the trials it never started have no results to fetch)
        for logger in ("ray.tune.tune", "ray.tune.analysis.experiment_analysis"):
            logging.getLogger(logger).addFilter(_quiet_interruption)
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None or signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None):
            self.signum = self.signum or signum
            raise KeyboardInterrupt  # the second signal, or Tune is not listening yet: stop now
        self.signum = signum
        print(f"\novatune: {signal.Signals(signum).name}: stopping; its trials are checkpointed "
              "and its state saved for --resume (Ctrl-C again stops at once)", flush=True)  # fmt: skip
        os.kill(os.getpid(), signal.SIGUSR1)


class PerLossASHA(tune.schedulers.FIFOScheduler):
    """Asynchronous successive halving within each loss: trials only compete with their own loss.

    One ``ASHAScheduler`` per loss, created on first sight. A single ASHA over the whole sweep would
    stop every trial of a loss that merely learns more slowly early on (one-vs-all DM does),
    leaving that loss without a champion.
    """

    def __init__(self, metric: str, mode: str, max_t: int):
        super().__init__()
        self._settings = {"time_attr": "training_iteration", "metric": metric, "mode": mode, "max_t": max_t,
                          "grace_period": max(1, max_t // 10)}  # fmt: skip
        self._by_loss: dict[str, tune.schedulers.ASHAScheduler] = {}

    def _of(self, trial) -> tune.schedulers.ASHAScheduler:
        loss = upgraded(trial.config)["loss"]
        if loss not in self._by_loss:
            self._by_loss[loss] = tune.schedulers.ASHAScheduler(**self._settings)
        return self._by_loss[loss]

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # fixed at construction

    def on_trial_add(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        return self._of(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "per-loss ASHA: " + "; ".join(f"{loss}: {s.debug_string()}" for loss, s in self._by_loss.items())


def _scheduler(name: str, space: SearchSpace, config: dict[str, Any]):
    if name == "fifo":
        return None
    if name == "asha":
        return PerLossASHA(space.metric, space.mode, max_t=int(config["epochs"]))
    raise ValueError(f"unknown scheduler {name!r}; choose from: {', '.join(SCHEDULERS)}")
