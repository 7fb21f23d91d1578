"""The job engine: what every Ray Tune job of ovatune shares, a sweep's and a replicate set's alike.

A *job* is one Tune experiment in Tune's storage (the home's ``ray_results``, or ``--storage``): trials of one or more losses, one
MLflow parent run per loss and one run per trial, stopped cleanly by Ctrl-C or SIGTERM and resumed
where it stopped (after a killed driver too). The kinds differ only in where their trials come from
(a sweep's searcher draws them from the space, a replicate set's hands out the champions' configs
with new seeds), so each kind plans a new job (:class:`JobPlan`) and this module does the rest:

    name_job            a new name (checked, not taken), or the one to resume (given, else the latest)
    planned_trainable   Ray up, and the trainable with its per-trial resources
    start_job           a new job's Tuner, fit under Interruption
    resume_job          a stopped job as it was started (stored_job), checked, restored, fit under Interruption
    close_interrupted   a stopped job's runs closed as interrupted, and the command that resumes it

The caller names what it does once the trials are done (``prepare``: a sweep promotes), so that it
loads while Ray starts.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from search_spaces import SearchSpace
from trainables.loss_names import LOSS_TITLES
from trainables.trial_metrics import get_selection_metric
from tuning.cluster import init_ray
from tuning.disk import DiskReserve, StorageFailure, storage_failure
from tuning.interruption import Interruption
from tuning.job_lock import lock_job
from tuning.packs import trial_results
from tuning.progress import SweepProgress, TrialRetries
from tuning.resources import TrialResources, plan_trial_resources
from tuning.retention import KEEP_CHECKPOINTS, GoneCheckpoints, keep_newest_of_finished
from tuning.settings import Settings, redact
from tuning.storage import check_job_name, job_exists, job_names, whole_state_uploads
from tuning.timeline import mark
from tuning.tracking import TAG_LOSS, find_runs, mark_interrupted, parent_runs
from tuning.trial_runs import MlflowTrialCallback

MAX_FAILURES = 2  # per trial: a lost node's trial resumes elsewhere from its checkpoint


@dataclass(frozen=True)
class JobKind:
    """How one kind of job is named, tagged and resumed.

    Attributes:
        noun: what the user calls one ("sweep", "replicate set").
        command: the ``ovatune`` command that starts it and resumes it.
        prefix: its names' start; ``<experiment>-<date>-<time>-<hex>`` follows.
        parent_kind: the ``ovatune.kind`` tag of its per-loss parent runs.
        trial_kind: the ``ovatune.kind`` tag of its trial runs, and what the user calls a trial.
        wrap_up: what its command does after the trials, as in "interrupted while <wrap_up>".
    """

    noun: str
    command: str
    prefix: str
    parent_kind: str
    trial_kind: str
    wrap_up: str


SWEEP = JobKind("sweep", "sweep", "", "parent", "trial", "promoting")
REPLICATES = JobKind("replicate set", "replicate", "replicates-", "replicates", "replicate", "logging checkpoints")


@dataclass(frozen=True)
class Job:
    """One job: its kind, name, MLflow experiment and parent runs (loss -> run id, in the job's loss
    order), the validation metric that ranks its trials (a sweep's selection metric, the one its
    champions were selected by for a replicate set) with its mode ("max" or "min"), and what it was
    started with (its parent runs' params, as text): a resume does what the start asked."""

    kind: JobKind
    name: str
    experiment_id: str
    parents: dict[str, str]
    metric: str
    mode: str
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class JobPlan:
    """A new job's trials, as its kind planned them.

    Attributes:
        searcher: hands Tune each trial's config.
        num_samples: trials in all.
        per_loss: trials per loss (the progress line's counts).
        columns: the config keys ``--verbose``'s table of trials shows.
        param_space: settings every trial shares (a sweep's), merged under the searcher's.
        scheduler: stops trials early (None: every trial runs to the end).
        max_concurrent: trials at once (None: as many as the cluster holds).
    """

    searcher: Searcher
    num_samples: int
    per_loss: int
    columns: list[str]
    param_space: dict[str, Any] | None = None
    scheduler: TrialScheduler | None = None
    max_concurrent: int | None = None


@dataclass(frozen=True)
class TrialShape:
    """What a command asked of each trial (``--cpus-per-trial``, ``--gpus-per-trial``,
    ``--workers-per-trial``); None: what the job was started with, else the space's default."""

    cpus: float | None = None
    gpus: float | None = None
    workers: int | None = None


@dataclass
class JobOutcome:
    """What a job's fit hands back: its results, and whether a signal or a storage failure stopped it early."""

    job: Job
    results: (
        list[tune.Result] | None
    )  # one per trial (a pack's members each): None when a second signal stopped it at once
    interrupted: int | None = None  # the signal that stopped it before every trial finished, if one did
    failure: StorageFailure | None = None  # the full disk (say) that stopped it, if one did

    @property
    def name(self) -> str:
        return self.job.name

    @property
    def experiment_id(self) -> str:
        return self.job.experiment_id

    @property
    def parents(self) -> dict[str, str]:
        return self.job.parents

    @property
    def losses(self) -> list[str]:
        return list(self.job.parents)

    @property
    def metric(self) -> str:
        return self.job.metric

    @property
    def stopped(self) -> bool:
        """Whether a signal or a storage failure stopped it before every trial finished."""
        return self.interrupted is not None or self.failure is not None

    @property
    def planned_trials(self) -> int:
        """Trials the job runs in all, as it was started (0 for a job from before jobs stored it)."""
        per_loss = self.job.params.get("trials_per_loss", self.job.params.get("seeds", "0"))
        return int(per_loss) * len(self.job.parents)


def new_job_name(kind: JobKind, experiment: str) -> str:
    """``<prefix><experiment>-<date>-<time>-<6 hex digits>``: the random part keeps two jobs started
    in the same second apart, on one machine or on several sharing a tracking server."""
    return f"{kind.prefix}{experiment}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def latest_job(kind: JobKind, settings: Settings, experiment: str) -> str | None:
    """The most recently started job of ``kind`` and ``experiment`` in this home's storage, if any."""
    candidates = job_names(settings, f"{kind.prefix}{experiment}-")
    return candidates[-1] if candidates else None


def name_job(
    kind: JobKind,
    space: SearchSpace,
    settings: Settings,
    client: MlflowClient,
    experiment_id: str,
    name: str | None,
    resume: bool,
) -> str:
    """The job's name: with ``resume``, ``name`` or the latest job of this kind, which must be there
    to restore; else ``name`` or a new one, which no job of this home or store has yet. This process
    then holds the job's lock (``tuning.job_lock``) until it releases it or ends.

    Raises:
        FileNotFoundError: nothing to resume.
        ValueError: a new job's name is taken, or is not a name.
        JobLocked: another process runs the job.
    """
    settings.ray_results.mkdir(parents=True, exist_ok=True)
    if resume:
        name = name or latest_job(kind, settings, space.name)
        if name is None or not tune.Tuner.can_restore(settings.job_storage(name)):
            raise FileNotFoundError(f"no {kind.noun} of {space.name!r} to resume in {settings.display_storage}")
        lock_job(settings.ray_results, name, kind.noun)
        return name
    name = check_job_name(name) if name else new_job_name(kind, space.name)
    if job_exists(settings, name) or find_runs(client, experiment_id, kind=kind.parent_kind, sweep=name):
        raise ValueError(f"a {kind.noun} named {name!r} already exists (in {settings.display_storage} or the MLflow "
                         f"store {settings.display_uri}); continue it with --resume --name {name}, or choose "
                         "another --name")  # fmt: skip
    lock_job(settings.ray_results, name, kind.noun)
    return name


def stored_job(
    kind: JobKind, client: MlflowClient, experiment_id: str, name: str, settings: Settings
) -> tuple[list[str], dict[str, str]]:
    """(the losses, the parameters it was started with) of the job ``name`` to resume, from its
    parent runs; the Tuner restores the rest.

    Raises:
        FileNotFoundError: the store has no parent runs of it (another home or store).
    """
    found = {r.data.tags[TAG_LOSS]: r for r in find_runs(client, experiment_id, kind=kind.parent_kind, sweep=name)}
    losses = [loss for loss in LOSS_TITLES if loss in found]
    if not losses:
        raise FileNotFoundError(f"{kind.noun} {name!r} has no runs in the MLflow store {settings.display_uri}; "
                                "resume it with the --home and --tracking-uri it was started with")  # fmt: skip
    return losses, found[losses[0]].data.params


def planned_trainable(
    space: SearchSpace,
    address: str | None,
    stored: dict[str, Any],
    shape: TrialShape,
    prepare: Callable[[], None] | None = None,
) -> tuple[Any, TrialResources, int]:
    """Ray up (only once the checks that need no cluster have passed), and (the trainable with its
    per-trial resources, those resources, how many trials the cluster holds at once).

    The trial shape is what was asked (``shape``), else what ``stored`` says (a resumed job's
    parent-run params, a replicated champion's config: ``workers_per_trial``, ``cpus_per_worker``,
    ``gpus_per_worker``), else the space's ``resources``. While Ray starts, the trainable loads, and
    then what ``prepare`` loads for the caller's work after the trials (a failure there is left for
    that work to meet).
    """
    workers = shape.workers or int(stored.get("workers_per_trial", space.resources.get("workers", 1)))
    cpus = shape.cpus if shape.cpus is not None else stored.get("cpus_per_worker")
    gpus = shape.gpus if shape.gpus is not None else stored.get("gpus_per_worker")
    requested = TrialResources(
        float(cpus if cpus is not None else space.resources.get("cpu", 1)),
        float(gpus if gpus is not None else space.resources.get("gpu", 0)),
        workers,
    )
    explicit = {key for key, value in (("cpus", shape.cpus), ("gpus", shape.gpus),
                                       ("workers", shape.workers)) if value is not None}  # fmt: skip
    init_ray(address, dashboard=workers > 1, meanwhile=lambda: _load_trainable_then(prepare))
    from trainables.train import train_classifier

    resources, slots, notes = plan_trial_resources(requested, explicit, on_cluster=address is not None)
    for note in notes:
        print(f"ovatune: {note}", flush=True)
    return tune.with_resources(train_classifier, resources.tune_request()), resources, slots


def _load_trainable_then(prepare: Callable[[], None] | None) -> None:
    """What the driver needs once Ray is up, loaded while it starts (about 5 s on 2 cores, otherwise
    one after the other): the trainable (torch, the model code), then what ``prepare`` loads."""
    import trainables.train  # noqa: F401

    if prepare is not None:
        prepare()


def start_job(
    job: Job, plan: JobPlan, trainable: Any, resources: TrialResources, slots: int, settings: Settings,
    verbose: int = 1,
) -> JobOutcome:  # fmt: skip
    """Run a new ``job`` as ``plan`` says, ``trainable`` with ``resources`` per trial on a cluster
    that holds ``slots`` trials at once; ``verbose``: 0 silent, 1 one progress line, 2 Ray Tune's
    table of every trial."""
    max_concurrent = plan.max_concurrent
    if resources.workers > 1:
        # Tune sees only each trial's small driver: it would start every trial at once, each
        # waiting for its workers. Run as many as the cluster can hold workers for.
        max_concurrent = min(max_concurrent or slots, slots)
    whole_state_uploads()  # a driver killed while Tune copies the job's state leaves it readable
    tuner = tune.Tuner(
        trainable,
        param_space=plan.param_space,
        tune_config=tune.TuneConfig(
            search_alg=plan.searcher,
            num_samples=plan.num_samples,
            max_concurrent_trials=max_concurrent,
            scheduler=plan.scheduler,
            # saves seconds per short trial; a multi-worker trial's process owns its Ray Train
            # run, which must end with it (a stopped trial's reused process would keep it going)
            reuse_actors=resources.workers == 1,
        ),
        run_config=tune.RunConfig(
            name=job.name,
            storage_path=settings.tune_storage,
            callbacks=[
                MlflowTrialCallback(
                    settings.tracking_uri, job.experiment_id, job.name, job.parents, kind=job.kind.trial_kind
                ),
                *([TrialRetries(MAX_FAILURES)] if verbose < 2 else []),  # --verbose: Ray's own reports
                GoneCheckpoints(),  # saved with the job: a resume needs it most
            ],  # fmt: skip
            checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
            failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
            verbose=min(verbose, 1),
            progress_reporter=progress_reporter(verbose, job.metric, job.mode, plan.per_loss, plan.columns),
        ),
    )
    mark("tuner built")
    return _fit(job, tuner, slots, settings)


def resume_job(
    kind: JobKind, name: str, space: SearchSpace, settings: Settings, client: MlflowClient, experiment_id: str,
    address: str | None, shape: TrialShape, default_metric: str,
    check: Callable[[dict[str, str]], None] | None = None, prepare: Callable[[], None] | None = None,
) -> JobOutcome:  # fmt: skip
    """Continue the stopped job ``name`` (see :func:`name_job`) as it was started, where it stopped.

    Its parent runs say how it was started (its losses, its params); ``check`` refuses, before Ray
    starts, a command that contradicts them. Its metric is the stored one (``default_metric`` for a
    job from before jobs stored theirs), its trial shape the stored one unless ``shape`` asks
    otherwise. Its searcher, scheduler, finished trials and checkpoints come back with its Tune
    experiment; its unfinished trials resume from their checkpoints, its parent runs reopen.

    Raises:
        FileNotFoundError: the store has no runs of it.
        ValueError: what ``check`` raises; trials of the shape can never run on the cluster.
    """
    losses, stored = stored_job(kind, client, experiment_id, name, settings)
    if check is not None:
        check(stored)
    metric = stored.get("metric", default_metric)
    trainable, _, slots = planned_trainable(space, address, stored, shape, prepare)
    parents = parent_runs(client, experiment_id, name, losses, {}, kind=kind.parent_kind)  # reopened
    job = Job(kind, name, experiment_id, parents, metric, get_selection_metric(metric).mode, stored)
    whole_state_uploads()  # Tune writes the job's state again as it restores it
    tuner = tune.Tuner.restore(settings.job_storage(name), trainable=trainable, resume_errored=True)
    mark("tuner built")
    return _fit(job, tuner, slots, settings)


def _fit(job: Job, tuner: tune.Tuner, slots: int, settings: Settings) -> JobOutcome:
    # Ray Tune keeps only one trial pending when a custom searcher is used; with trials shorter than
    # a worker's start-up, the second slot then never gets a trial. Keep every slot fed.
    # On an autoscaling cluster the pending trials are also what makes the autoscaler launch nodes.
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(max(4, slots + 1)))
    reserve = DiskReserve(settings.ray_results / f".{job.name}.reserve")
    try:
        with Interruption(reserve) as interruption:
            try:
                grid = tuner.fit()  # Tune has saved the job's state: older checkpoints of finished trials can go
                keep_newest_of_finished(grid)
                results = trial_results(grid)  # a pack's members as results of their own (tuning.packs)
            except KeyboardInterrupt:  # the second signal: stopped at once
                results = None
            except Exception as error:  # Tune's own writes (its state, a trial's error file) on a full disk
                failure = storage_failure(error)
                if failure is None:
                    raise
                interruption.fail(failure)
                results = None
    finally:
        reserve.release()
    mark("trials done")
    return JobOutcome(job, results, interruption.signum, interruption.failure)


def progress_reporter(
    verbose: int, metric: str, mode: str, per_loss: int, parameters: list[str]
) -> tune.ProgressReporter:
    """Verbosity 1: ovatune's one line (``tuning.progress.SweepProgress``; ``per_loss`` trials per
    loss); 2 (``--verbose``): Ray Tune's table of every trial (``parameters`` its columns)."""
    if verbose >= 2:
        columns = list(dict.fromkeys(["epoch", "train_loss", metric, "val_ece"]))
        return tune.CLIReporter(parameter_columns=parameters, metric_columns=columns, max_report_frequency=15)
    return SweepProgress(metric, mode, per_loss)


def resume_command(
    kind: JobKind, space: SearchSpace, name: str, settings: Settings, address: str | None, data_dir: str | None = None,
    command: str | None = None, then: tuple[str, ...] = (),
) -> list[str]:  # fmt: skip
    """``ovatune <command> <exp> --resume --name <name>`` with the home, store, cluster (and data
    folder) the stopped job used, as an argv list. ``command``: the one the job was started by, when
    it did more than the kind's own (``run`` resumes its sweep, then replicates and evaluates), with
    ``then``: the options of that more (``--replicates R``)."""
    resume = ["ovatune", command or kind.command, space.name, "--resume", "--name", name, *then,
              "--home", str(settings.home)]  # fmt: skip
    if settings.storage:
        resume += ["--storage", redact(settings.storage)]
    if not settings.is_local_store:
        resume += ["--tracking-uri", settings.display_uri]
    if data_dir:
        resume += ["--data-dir", data_dir]
    if address:
        resume += ["--address", address]
    return resume


def close_interrupted(
    outcome: JobOutcome, space: SearchSpace, settings: Settings, address: str | None, data_dir: str | None = None,
    command: str | None = None, then: tuple[str, ...] = (),
) -> tuple[int | None, str]:  # fmt: skip
    """A job a signal or a storage failure stopped: its unfinished runs closed as KILLED and tagged interrupted, with the
    command that resumes it (``--resume`` reopens them; ``command``, ``then``: see
    :func:`resume_command`). Returns (the trial runs closed, or None when a full disk under the store
    kept them open, and that command)."""
    import shlex

    resume = resume_command(outcome.job.kind, space, outcome.name, settings, address, data_dir, command, then)
    command = shlex.join(resume) + settings.credentials_note
    why = (f"interrupted by {signal.Signals(outcome.interrupted).name}" if outcome.interrupted
           else f"stopped: {outcome.failure.message if outcome.failure else 'unknown'}")  # fmt: skip
    try:
        closed = mark_interrupted(MlflowClient(settings.tracking_uri), outcome.experiment_id, outcome.name,
                                  f"{why}; resume with: {command}")  # fmt: skip
    except Exception as error:
        if outcome.failure is None or storage_failure(error) is None:
            raise
        closed = None  # the store's disk is still full: the runs stay open, and --resume reopens them anyway
    return closed, command
