"""MLflow bookkeeping: experiments, one parent run per (sweep, loss), one child run per trial.

Layout in the MLflow UI:

    experiment  <experiment name>                 (description: the search space's)
      run  "softmax · <sweep>"                    parent, tags ovatune.kind=parent
        run  "softmax-trial-000"                  child: params, per-epoch metrics, outcome
        ...
      run  "evaluation · <sweep>"                 the evaluation of the four champions

Trials are logged from the driver by ``tuning.trial_runs.MlflowTrialCallback``; this module has
no Ray in it, so the commands that only read the store (export, ui) do not import Ray. The checks
of the store before anything is written are ``tuning.store``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from mlflow.entities import Param, RunTag
from mlflow.tracking import MlflowClient

from tuning.settings import Settings

if TYPE_CHECKING:  # the module itself imports torch, which `ovatune ui` has no use for
    from trainables.data.provenance import Provenance

log = logging.getLogger(__name__)

TAG_KIND = "ovatune.kind"  # parent | trial | replicates | replicate | evaluation
TAG_SWEEP = "ovatune.sweep"
TAG_LOSS = "ovatune.loss"
TAG_TRIAL_NUMBER = "ovatune.trial_number"
TAG_TRIAL_ID = "ovatune.ray_trial_id"
TAG_OUTCOME = "ovatune.outcome"  # completed | diverged | stopped | error | interrupted
TAG_STOP_REASON = "ovatune.stop_reason"
TAG_NODE_ID = "ovatune.node_id"  # the Ray node that trained the trial (rank 0's, for a multi-worker trial)
TAG_NODE_TYPE = "ovatune.node_type"  # that node's autoscaler node type, where the autoscaler says
TAG_GPU_IDS = "ovatune.gpu_ids"  # the GPU ids Ray assigned it ("" on the CPU)
TAG_CHECKPOINT_FALLBACK = "ovatune.checkpoint_fallback"  # a resume passed over a corrupted checkpoint
TAG_PARENT = "mlflow.parentRunId"


def quiet_mlflow_logs() -> None:
    """MLflow's SQLite store logs every schema migration at INFO, and logging a model announces
    its input-example check: keep the terminal readable (warnings still show)."""
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking.fluent", "mlflow.pyfunc",
                 "mlflow.store.model_registry.abstract_store"):  # fmt: skip
        logging.getLogger(name).setLevel(logging.WARNING)
    # against a server, MLflow prints two links (run, experiment) whenever a run ends: 8 lines per
    # smoke-test sweep; the closing summary says where the UI is
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # a progress bar per downloaded model would bury the command's own output
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def get_or_create_experiment(client: MlflowClient, name: str, description: str, settings: Settings) -> str:
    """The MLflow experiment ``name``'s id, creating it (with its description) if needed."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifact_location = (settings.artifact_root / name).as_uri() if settings.is_local_store else None
    # experimentKind: the MLflow UI opens a model-training experiment on its runs, not on GenAI traces
    tags = {"mlflow.note.content": description, "mlflow.experimentKind": "custom_model_development"}
    return client.create_experiment(name, artifact_location=artifact_location, tags=tags)


def find_runs(client: MlflowClient, experiment_id: str, **tags: str) -> list:
    """Active runs of an experiment whose ``ovatune.<key>`` tags equal the given values."""
    clauses = [f"tags.`ovatune.{key}` = '{value}'" for key, value in tags.items()]
    return client.search_runs([experiment_id], filter_string=" and ".join(clauses), max_results=10_000)


def parent_runs(
    client: MlflowClient,
    experiment_id: str,
    sweep: str,
    losses: list[str],
    params: dict[str, Any],
    kind: str = "parent",
    titles: dict[str, str] | None = None,
    tags: dict[str, dict[str, str]] | None = None,
) -> dict[str, str]:
    """loss -> the parent run id of (sweep, loss), found again on resume or created.

    A sweep's parents are ``kind`` "parent", named ``<loss> · <sweep>``; a replicate set's are
    "replicates", with their own ``titles`` and extra ``tags`` (loss -> run name, loss -> tags).
    """
    existing = {r.data.tags[TAG_LOSS]: r.info.run_id for r in find_runs(client, experiment_id, kind=kind, sweep=sweep)}
    parents = {}
    for loss in losses:
        if loss in existing:
            parents[loss] = existing[loss]
            client.update_run(existing[loss], status="RUNNING")
            continue
        run = client.create_run(
            experiment_id,
            run_name=(titles or {}).get(loss, f"{loss} · {sweep}"),
            tags={TAG_KIND: kind, TAG_SWEEP: sweep, TAG_LOSS: loss, **(tags or {}).get(loss, {})},
        )
        client.log_batch(run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
        parents[loss] = run.info.run_id
    return parents


def mark_interrupted(client: MlflowClient, experiment_id: str, sweep: str, reason: str) -> int:
    """Close a stopped job's unfinished runs as KILLED, tagged ``interrupted`` (not FINISHED, not
    diverged) with ``reason`` as their stop reason: its parents, and every trial run still RUNNING.
    ``--resume`` reopens them. Returns the number of trial runs closed."""
    closed = 0
    for run in find_runs(client, experiment_id, sweep=sweep):
        if run.info.status != "RUNNING":
            continue
        closed += run.data.tags.get(TAG_KIND) in ("trial", "replicate")
        client.log_batch(run.info.run_id, tags=[RunTag(TAG_OUTCOME, "interrupted"), RunTag(TAG_STOP_REASON, reason)])
        client.set_terminated(run.info.run_id, status="KILLED")
    return closed


def close_parent(client: MlflowClient, run_id: str, status: str) -> None:
    """Close a job's parent run as ``status`` (FINISHED or FAILED). A resumed job's parent loses the
    ``interrupted`` outcome and the stop reason its stop left (:func:`mark_interrupted`)."""
    tags = client.get_run(run_id).data.tags
    if tags.get(TAG_OUTCOME) == "interrupted":
        for tag in (TAG_OUTCOME, TAG_STOP_REASON):
            if tag in tags:
                client.delete_tag(run_id, tag)
    client.set_terminated(run_id, status=status)


def log_provenance(client: MlflowClient, run_id: str, records: list[Provenance]) -> None:
    """Record the data a run used as MLflow dataset inputs: the UI's Dataset column shows each
    one's name, digest and split (the input's ``mlflow.data.context``), its page the source, the
    schema and the number of examples. Logging the same input twice (a resumed trial) adds nothing."""
    import numpy as np
    from mlflow.data.schema import TensorDatasetSchema
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.types.schema import Schema, TensorSpec
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    inputs = []
    for record in records:
        features = np.dtype("uint8" if record.dtype == "image files" else record.dtype)
        schema = TensorDatasetSchema(
            features=Schema([TensorSpec(features, (-1, *record.shape))]),
            targets=Schema([TensorSpec(np.dtype("int64"), (-1,))]) if record.split != "ood" else None,
        )
        embedded = not record.source.startswith("/")
        dataset = Dataset(
            name=record.name,
            digest=record.digest,
            source_type="code" if embedded else "local",
            source=json.dumps({"tags": {"loader": record.source}} if embedded else {"uri": record.source}),
            schema=json.dumps(schema.to_dict()),
            profile=json.dumps(
                {
                    "num_examples": record.num_examples,
                    "split": record.split,
                    "data_seed": record.data_seed,
                    "source": record.source,
                }
            ),
        )
        inputs.append(DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, record.split)]))
    client.log_inputs(run_id, datasets=inputs)


REGISTRATION_NOTICES = ("Successfully registered model", "Created version", "Registered model")


@contextlib.contextmanager
def without_registration_notices():
    """MLflow prints two lines to stderr per registered version (not through logging, so no level
    quiets them); ovatune prints which version each loss got itself. Drop exactly those lines;
    anything else written to stderr meanwhile is passed on."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    finally:
        for line in captured.getvalue().splitlines():
            if not line.startswith(REGISTRATION_NOTICES):
                print(line, file=sys.stderr)


def __getattr__(name: str) -> Any:
    # Tune experiments saved before the callback moved to tuning.trial_runs pickled it under this
    # module's name: Tuner.restore of such a sweep looks it up here.
    if name == "MlflowTrialCallback":
        from tuning.trial_runs import MlflowTrialCallback

        return MlflowTrialCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
