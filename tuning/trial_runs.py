"""The runs of a job's trials in MLflow, logged from the driver by :class:`MlflowTrialCallback`.

Training processes never talk to the tracking store. A trial's run is identified by (job, loss,
trial number); that is what makes ``--resume`` exact: a trial resumed from its checkpoint
continues its own run (each epoch logged once, in order), and a trial that the resumed searcher
hands out again (because the driver died before saving it) replaces the run of its lost
predecessor instead of adding one.

A full disk (or another storage failure) under the store stops the job rather than the driver
(``tuning.disk``): this callback then writes nothing more, and the resume logs what it skipped. The
epochs a run lacks come from the trial's checkpoint, which keeps every epoch's metrics: a resumed
trial reports them once (``REPLAY_KEY``), and a trial that finished while nothing could be logged
is recorded from its last checkpoint when the resumed job starts.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from ray.tune import Callback

from trainables.trial_config import upgraded
from trainables.trial_metrics import REPLAY_KEY
from tuning.disk import quiet_storage_errors, storage_failure
from tuning.interruption import stop_job
from tuning.packs import is_pack, member_results, members_of
from tuning.tracking import (
    TAG_CHECKPOINT_FALLBACK,
    TAG_GPU_IDS,
    TAG_KIND,
    TAG_LOSS,
    TAG_NODE_ID,
    TAG_NODE_TYPE,
    TAG_OUTCOME,
    TAG_PARENT,
    TAG_STOP_REASON,
    TAG_SWEEP,
    TAG_TRIAL_ID,
    TAG_TRIAL_NUMBER,
    find_runs,
    log_provenance,
)

# Keys of a Ray result that are bookkeeping rather than metrics of the model.
_NOT_METRICS = {
    "training_iteration", "time_total_s", "timestamp", "pid", "time_since_restore",
    "iterations_since_restore", "timesteps_total", "episodes_total", "timesteps_since_restore",
    "done", "epoch", "ended",
}  # fmt: skip


def finite_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The numeric model metrics of a Ray result (bookkeeping keys and booleans left out)."""
    return {
        key: float(value)
        for key, value in result.items()
        if key not in _NOT_METRICS and isinstance(value, (int, float)) and not isinstance(value, bool)
    }


class MlflowTrialCallback(Callback):
    """Ray Tune callback, run in the driver: one MLflow child run per trial, metrics per epoch.

    Args:
        tracking_uri: the MLflow store.
        experiment_id: the experiment of the sweep.
        sweep: the sweep's (or replicate set's) name (tag ``ovatune.sweep``).
        parents: loss -> parent run id.
        kind: the runs' ``ovatune.kind``: "trial" for a sweep's, "replicate" for a replicate set's
            (their ``trial_number`` is the replicate's number).
    """

    def __init__(self, tracking_uri: str, experiment_id: str, sweep: str, parents: dict[str, str], kind: str = "trial"):
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.sweep = sweep
        self.parents = parents
        self.kind = kind
        self._client: MlflowClient | None = None
        self._runs: dict[tuple[str, int], Any] = {}  # (loss, trial number) -> mlflow Run
        self._last_step: dict[str, int] = {}  # run id -> last epoch logged
        self._pending: dict[str, list[Future]] = {}  # run id -> metric writes still in flight
        self._node: dict[str, str] = {}  # run id -> the node its tags name
        self._writer: ThreadPoolExecutor | None = None  # the metric writes, one at a time, in order
        self._restored_checked = False  # the trials that ended before this driver are recorded
        self._failed = False  # a storage failure stopped the job: write nothing more (the resume replays it)
        self._closed: set[str] = set()  # run ids this driver has closed

    _CACHES = ("_client", "_runs", "_last_step", "_pending", "_node", "_writer", "_restored_checked", "_failed",
               "_closed")  # fmt: skip

    # The client and run cache are rebuilt after Tuner.restore unpickles this callback.
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in self._CACHES}

    def __setstate__(self, state: dict) -> None:
        state.setdefault("kind", "trial")  # pickled by a sweep before replicates existed
        self.__dict__.update(state, _client=None, _runs={}, _last_step={}, _pending={}, _node={}, _writer=None,
                             _restored_checked=False, _failed=False, _closed=set())  # fmt: skip

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def _guard(self, write: Callable[[], Any]) -> None:
        """Do ``write`` (this callback's writes to the store): a storage failure (a full disk under
        the store) stops the job instead of ending the driver, and every later write is skipped, so
        that no run's history has a hole (the resume logs from the first missing epoch on). Any other
        error is raised. From any thread."""
        if self._failed:
            return
        try:
            write()
        except Exception as error:
            failure = storage_failure(error)
            if failure is None:
                raise
            self._failed = True
            stop_job(failure)

    def setup(self, **info) -> None:
        quiet_storage_errors()  # MLflow logs each failed SQLite write with a traceback; one line says it
        for run in find_runs(self.client, self.experiment_id, kind=self.kind, sweep=self.sweep):
            key = (run.data.tags[TAG_LOSS], int(run.data.tags[TAG_TRIAL_NUMBER]))
            self._runs[key] = run

    def _run_for(self, trial) -> str:
        """The run id of ``trial``: its own run if it has one, else a new one (see module doc)."""
        loss, number = upgraded(trial.config)["loss"], int(trial.config["trial_number"])
        params = [Param(k, str(v)[:6000]) for k, v in sorted(trial.config.items())]
        run = self._runs.get((loss, number))
        if run is not None and run.data.tags.get(TAG_TRIAL_ID) == trial.trial_id:
            if run.info.run_id not in self._last_step:  # first sight in this driver: a resumed trial
                history = self.client.get_metric_history(run.info.run_id, "train_loss")
                self._last_step[run.info.run_id] = max((m.step for m in history), default=0)
                # A driver killed between create_run and log_batch left the run without params.
                missing = [p for p in params if p.key not in run.data.params]
                if missing:
                    self.client.log_batch(run.info.run_id, params=missing)
                self.client.update_run(run.info.run_id, status="RUNNING")
            return run.info.run_id
        if run is not None:  # a lost trial's run: the searcher handed its slot out again
            self.client.delete_run(run.info.run_id)
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{loss}-{self.kind}-{number:03d}",
            tags={
                TAG_PARENT: self.parents[loss],
                TAG_KIND: self.kind,
                TAG_SWEEP: self.sweep,
                TAG_LOSS: loss,
                TAG_TRIAL_NUMBER: str(number),
                TAG_TRIAL_ID: trial.trial_id,
            },
        )
        self.client.log_batch(run.info.run_id, params=params)
        self._runs[(loss, number)] = run
        self._last_step[run.info.run_id] = 0
        return run.info.run_id

    def _await_writes(self, run_id: str) -> None:
        for write in self._pending.pop(run_id, []):
            write.result()

    def on_experiment_end(self, trials, **info) -> None:
        self.on_step_begin(0, trials)  # a restored job whose trials had all ended runs no step
        for run_id in list(self._pending):
            self._guard(partial(self._await_writes, run_id))

    def on_step_begin(self, iteration, trials, **info) -> None:
        if not self._restored_checked:  # the first step: the trials are those the job was restored with
            self._restored_checked = True
            self._guard(lambda: self._record_finished_unrecorded(trials))

    def _record_finished_unrecorded(self, trials) -> None:
        """Trials that finished before this driver, while their runs could not be closed (the store's
        disk was full, or the driver was killed): each run gets its missing epochs from the trial's
        last checkpoint and is closed as the trial ended."""
        for trial in (member for tune_trial in trials for member in members_of(tune_trial)):
            run = self._runs.get((upgraded(trial.config)["loss"], int(trial.config["trial_number"])))
            if trial.status != "TERMINATED" or (run and run.data.tags.get(TAG_OUTCOME) not in (None, "interrupted")):
                continue
            if run is None and trial.checkpoint is None:
                continue  # never trained: nothing to record
            run_id = self._run_for(trial)
            history = checkpoint_history(trial.checkpoint) if trial.checkpoint is not None else []
            # its last result too: a trial the scheduler stopped between checkpoints ended after its last one
            self._replay(run_id, [*history, *([trial.last_result] if trial.last_result else [])], after_step=None)
            self._guard(lambda trial=trial: self._complete(trial))

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        for member in members_of(trial):  # a pack (tuning.packs): each of its trials has its own run
            if not getattr(member, "ended", False):  # a member that diverged before a restart stays closed
                self._guard(lambda member=member: self._run_for(member))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if not is_pack(trial.config):
            self._guard(lambda: self._log_result(trial, result))
            return
        own = member_results(result)
        for member in members_of(trial):
            if own.get(member.number, {}).get("ended") and self._closed_before(member):
                continue  # its final result, repeated with every result of its pack
            if member.number in own:
                self._guard(lambda member=member: self._log_result(member, own[member.number]))
            if own.get(member.number, {}).get("ended"):  # it diverged: its run ends now, not with its pack
                self._guard(lambda member=member: self._complete(member, own[member.number]))

    def _log_result(self, trial, result: dict) -> None:
        run_id = self._run_for(trial)
        if result.get("data_provenance"):  # with a trial process's first result: what it trains on
            from trainables.data.provenance import Provenance

            records = [Provenance.from_dict(r) for r in json.loads(result["data_provenance"])]
            log_provenance(self.client, run_id, records)
        if result.get("checkpoint_fallback"):  # resumed past a corrupted checkpoint: the run says which
            self.client.set_tag(run_id, TAG_CHECKPOINT_FALLBACK, str(result["checkpoint_fallback"])[:5000])
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        if result.get(REPLAY_KEY):  # a resumed trial: the epochs before its checkpoint that the run lacks
            self._replay(run_id, json.loads(result[REPLAY_KEY]), after_step=step)
        if step <= self._last_step.get(run_id, 0):
            return  # already logged before the driver restarted
        self._write_epoch(run_id, step, finite_metrics(result))
        if result.get("node_id") and self._node.get(run_id) != result["node_id"]:
            self._tag_placement(run_id, result)

    def _write_epoch(self, run_id: str, step: int, values: dict[str, float]) -> None:
        """Log one epoch's metrics (NaN left out: a diverged trial's are recorded as its outcome).

        Asynchronous: a function trainable waits for the driver to take each result, so a slow
        store write here would stall training. The run's writes are awaited when it finishes.
        One writer thread, not MLflow's async logging (10 threads): epoch e+1 can never reach the
        store before epoch e, so a killed driver leaves each run's history whole up to its last
        step, where the resumed run continues (MLflow's order left a run without epoch 13).
        """
        timestamp = int(time.time() * 1000)
        metrics = [Metric(key, value, timestamp, step) for key, value in values.items() if math.isfinite(value)]
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ovatune-metrics")
        write = self._writer.submit(self._guard, lambda: self.client.log_batch(run_id, metrics=metrics))
        self._pending.setdefault(run_id, []).append(write)
        self._last_step[run_id] = step

    def _replay(self, run_id: str, history: list[dict[str, float]], after_step: int | None) -> None:
        """Log the epochs of ``history`` (a checkpoint's, oldest first) that the run lacks: those after
        its last logged one, and before ``after_step`` (the epoch being reported; None: all)."""
        for epoch in history:
            step = int(epoch.get("epoch", 0))
            if self._last_step.get(run_id, 0) < step and (after_step is None or step < after_step):
                self._write_epoch(run_id, step, finite_metrics(epoch))

    def _tag_placement(self, run_id: str, result: dict) -> None:
        """Tag the run with the node (and its autoscaler node type) and GPUs that train it."""
        from tuning.resources import node_type_of

        tags = [RunTag(TAG_NODE_ID, result["node_id"]), RunTag(TAG_GPU_IDS, str(result.get("gpu_ids", "")))]
        node_type = node_type_of(result["node_id"])
        if node_type:
            tags.append(RunTag(TAG_NODE_TYPE, node_type))
        self.client.log_batch(run_id, tags=tags)
        self._node[run_id] = result["node_id"]

    def _closed_before(self, trial) -> bool:
        """Whether ``trial``'s run was closed by this driver or, with an outcome, before it started."""
        run = self._runs.get((upgraded(trial.config)["loss"], int(trial.config["trial_number"])))
        if run is None:
            return False
        return run.info.run_id in self._closed or run.data.tags.get(TAG_OUTCOME) not in (None, "interrupted")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        for member in members_of(trial):
            self._guard(lambda member=member: self._complete(member))

    def _complete(self, trial, result: dict | None = None) -> None:
        """Close ``trial``'s run as its ``result`` (default: its last) says it ended."""
        result = result or trial.last_result or {}
        if result.get("diverged"):
            outcome, status = "diverged", "KILLED"
            reason = str(result.get("stop_reason", "non-finite training loss"))
        elif int(result.get("epoch", 0)) < int(trial.config.get("epochs", 0)):
            outcome, status, reason = "stopped", "KILLED", "stopped early by the scheduler"
        else:
            outcome, status, reason = "completed", "FINISHED", ""
        self._finish(trial, outcome, status, reason)

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._stop_if_out_of_storage(trial)  # retrying on a full disk would only fail again

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        if self._stop_if_out_of_storage(trial):
            return  # not the trial's fault: its run is closed as interrupted, and --resume retries it
        reason = f"error; see {trial.local_path or trial.path} for the traceback"
        for member in members_of(trial):
            if not getattr(member, "ended", False):  # a pack's diverged members had ended before
                self._guard(lambda member=member: self._finish(member, "error", "FAILED", reason))

    def _stop_if_out_of_storage(self, trial) -> bool:
        """Stop the job when ``trial`` failed for its storage (a checkpoint on a full disk)."""
        try:
            record = trial.get_error()  # the text of every failure of the trial, each after "Failure # N"
        except Exception:  # noqa: BLE001 - the record itself may be what the full disk lost
            record = None
        failure = storage_failure(str(record).rsplit("Failure # ", 1)[-1]) if record else None  # the last one
        if failure is not None:
            self._failed = True
            stop_job(failure)
        return failure is not None

    def _finish(self, trial, outcome: str, status: str, reason: str) -> None:
        if getattr(trial, "ended", False) and self._closed_before(trial):
            return  # a pack's member that diverged: closed when it did (not reopened to be closed again)
        run_id = self._run_for(trial)
        if run_id in self._closed:
            return
        self._await_writes(run_id)
        if self._failed:  # a write of its epochs failed: closed as interrupted, and its resume logs them
            return
        tags = [RunTag(TAG_OUTCOME, outcome)] + ([RunTag(TAG_STOP_REASON, reason)] if reason else [])
        self.client.log_batch(run_id, tags=tags)
        self.client.set_terminated(run_id, status=status)
        self._closed.add(run_id)


def checkpoint_history(checkpoint) -> list[dict[str, float]]:
    """Every epoch's metrics up to a Ray ``checkpoint`` of a trial, from its ``meta.json``; empty for a
    checkpoint saved before checkpoints kept them, or one that cannot be read (its epochs are then
    missing from the run, as they were before checkpoints kept them)."""
    from trainables.checkpoint import CHECKPOINT_META

    try:
        with checkpoint.as_directory() as directory:
            return json.loads((Path(directory) / CHECKPOINT_META).read_text()).get("history", [])
    except (OSError, ValueError, AttributeError):  # gone, truncated, not JSON, not a dict
        return []
