"""``ovatune export``: the champions as torch.export programs (the default), ONNX, MLflow or
TorchScript models, each with a model card.

Every export folder holds the model file(s), ``serving.json`` (classes, loss, preprocessing, the
none-of-the-above threshold and how it was chosen), ``model_card.md`` and ``manifest.json`` with the
SHA-256 of every other file; ``serving.ExportedModel`` checks those before loading.
"""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
import warnings
from pathlib import Path

import mlflow
import torch
from mlflow.tracking import MlflowClient

from search_spaces import SearchSpace
from serving.bundle import (
    BUNDLE_ARTIFACT,
    BUNDLE_META,
    MANIFEST_FILE,
    OUTPUTS,
    SERVING_FILE,
    TOKENIZER_FILE,
    load_serving_bundle,
)
from serving.formats import EXPORT_FILES
from trainables.checksums import sha256
from tuning.champion import (
    CARD_FILE,
    CHAMPION,
    NoChampion,
    champion_versions,
    current_champion,
    model_card,
    registered_name,
)
from tuning.errors import one_line
from tuning.interruption import Stopped
from tuning.options import FORMATS
from tuning.timeline import mark


class ExportFailed(RuntimeError):
    """A champion could not be exported; nothing at its target was changed."""


def _write_manifest(directory: Path) -> None:
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)
    manifest = {str(p.relative_to(directory)): sha256(p) for p in files}
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))


def check_export_folder(out: str | Path) -> None:
    """Raises ExportFailed when ``out`` is a file: the exports need a folder there (one made if missing)."""
    if Path(out).exists() and not Path(out).is_dir():
        raise ExportFailed(f"--out {out} is a file, not a folder: pass a folder for the exports")


def export_champion(space: SearchSpace, loss: str, fmt: str, out: str | Path, client: MlflowClient) -> Path:
    """Write ``loss``'s champion of ``space`` to ``out/<loss>/<fmt>/``; returns that folder.

    The export is written beside ``out/<loss>/<fmt>/`` and renamed into place only when complete.

    Raises:
        NoChampion: ``loss`` has no model with the ``champion`` alias.
        ExportFailed: the export could not be written (the message names the loss and the model's
            source); a previous export at the target is left as it was.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from: {', '.join(FORMATS)}")
    name = registered_name(space.name, loss)
    version = current_champion(client, name)
    if version is None:
        raise NoChampion(f"{name} has no version with alias {CHAMPION!r}: run `ovatune sweep {space.name}` first")
    check_export_folder(out)
    target = Path(out) / loss / fmt
    # Written beside the target and renamed into place only when complete: a failed export leaves
    # the previous one as it was.
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{fmt}.partial-", dir=target.parent))
    try:
        _write_export(space, loss, fmt, name, version, client, staging)
        mark("export written")
    except BaseException as error:  # a failure, or a stop (tuning.interruption.Stopped): no partial folder stays
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, Stopped) or not isinstance(error, Exception):
            raise
        raise ExportFailed(
            f"{loss}: exporting {name} v{version.version} (from {version.source}) failed: "
            f"{one_line(error)}; "
            f"{target} was left as it was"
        ) from error
    previous = target.with_name(f".{fmt}.previous-{staging.name.rsplit('-', 1)[-1]}")
    # The two renames are one step: a signal between them would leave no export at the target, so
    # SIGINT and SIGTERM wait until both are done.
    deferred = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        if target.exists():
            target.rename(previous)
        staging.rename(target)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, deferred)
    shutil.rmtree(previous, ignore_errors=True)
    return target


def _write_export(space: SearchSpace, loss: str, fmt: str, name: str, version, client: MlflowClient, target: Path):
    """Write one champion's export files into ``target`` (an empty folder)."""
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version.version}", dst_path=scratch))
        bundle = model_dir / "artifacts" / BUNDLE_ARTIFACT
        serving, info = load_serving_bundle(bundle)  # checks the registered files' hashes
        example = torch.zeros(2, *info["raw_input_shape"])
        FORMATS[fmt].make(serving, example, model_dir, target)
        (target / SERVING_FILE).write_text(json.dumps({**info, "format": fmt}, indent=1))
        tokenizer = json.loads((bundle / BUNDLE_META).read_text()).get("tokenizer")
        if tokenizer:  # text models take token ids: the tokenizer that makes them ships beside the model
            (target / TOKENIZER_FILE).write_text(tokenizer)
    card = version.description if (version.description or "").startswith("# Model card") else None
    if card is None:
        params = client.get_run(version.run_id).data.params
        card = model_card(space, loss, version, info, {k: v for k, v in params.items() if k in space.ranges}, None)
    (target / CARD_FILE).write_text(card)
    _write_manifest(target)


def _dynamic_batch() -> tuple[dict[int, torch.export.Dim]]:
    """The serving model's one input (raw inputs, (B, ...)) with its batch dimension left free: what
    the torch_export and ONNX formats are traced with."""
    return ({0: torch.export.Dim("batch")},)


def write_torch_export(serving: torch.nn.Module, example: torch.Tensor, model_dir: Path, target: Path) -> None:
    """``--format torch_export``: the serving model as a ``torch.export`` ExportedProgram with a
    dynamic batch, ``model.pt2``: ``torch.export.load(path).module()`` runs it with torch alone."""
    with torch.no_grad():
        program = torch.export.export(serving, (example,), dynamic_shapes=_dynamic_batch())
    torch.export.save(program, str(target / EXPORT_FILES["torch_export"]))


def write_torchscript(serving: torch.nn.Module, example: torch.Tensor, model_dir: Path, target: Path) -> None:
    """``--format torchscript``: the serving model traced, as ``model.pt``. PyTorch is retiring
    TorchScript (``torch.jit`` warns so); kept while torch ships it, ``torch_export`` succeeds it.
    ``ovatune export`` says so once, in place of torch's warnings for every model."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        traced = torch.jit.trace(serving, example)
        torch.jit.save(traced, str(target / EXPORT_FILES["torchscript"]))


def write_onnx(serving: torch.nn.Module, example: torch.Tensor, model_dir: Path, target: Path) -> None:
    """``--format onnx``: the serving model as an ONNX graph with a dynamic batch, ``model.onnx``."""
    torch.onnx.export(
        serving,
        (example,),
        str(target / EXPORT_FILES["onnx"]),
        input_names=["raw_inputs"],
        output_names=list(OUTPUTS),
        dynamic_shapes=_dynamic_batch(),
        dynamo=True,
        verbose=False,
    )


def write_mlflow(serving: torch.nn.Module, example: torch.Tensor, model_dir: Path, target: Path) -> None:
    """``--format mlflow``: the registered MLflow pyfunc model as it is, ``mlflow_model/``."""
    shutil.copytree(model_dir, target / EXPORT_FILES["mlflow"])


def champion_losses(space: SearchSpace, client: MlflowClient) -> list[str]:
    """The losses of ``space`` that have a champion."""
    return list(champion_versions(client, space.name))
