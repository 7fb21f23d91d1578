"""A trial's checkpoint on disk: what it holds, how it is checked, how a model comes back from it.

A checkpoint directory holds ``state.pt`` (model, optimizer and epoch; loads with
``weights_only=True``), ``meta.json`` (config, classes, input shape, tokenizer, the epoch's metrics
and those of every epoch before it: enough to rebuild the model without Ray) and ``checksums.json`` (the SHA-256 of both, checked
before anything loads them). A resumed trial falls back to its newest intact checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from trainables.checksums import TamperedFile, verify_checksums, write_checksums
from trainables.data import Dataset
from trainables.models import Classifier, build_classifier
from trainables.pack_format import PACK_STATE

CHECKPOINT_STATE = "state.pt"  # model, optimizer and schedule state; loads with weights_only=True
CHECKPOINT_META = "meta.json"  # what it takes to rebuild the model without Ray: config, classes

T = TypeVar("T")


def save_checkpoint(
    directory: Path, model, optimizer, epoch: int, config: dict, data: Dataset, metrics: dict,
    history: list[dict] | None = None,
) -> None:  # fmt: skip
    """Write the trial state after ``epoch`` (1-based) epochs, with that epoch's metrics and the
    ``history`` of every epoch's numeric metrics so far (what a resume replays into a trial's MLflow
    run when the driver could not log them: a full disk, a killed driver)."""
    torch.save(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch},
        directory / CHECKPOINT_STATE,
    )
    meta = {
        "config": {k: v for k, v in config.items() if _is_json(v)},
        "tokenizer": data.tokenizer,  # text: the tokenizer that made the inputs (tokenizers JSON), else None
        "input_shape": list(data.input_shape),
        "class_names": data.class_names,
        "epoch": epoch,
        "metrics": metrics,
        "history": history or [],
    }
    (directory / CHECKPOINT_META).write_text(json.dumps(meta, indent=1))
    write_checksums(directory, [CHECKPOINT_STATE, CHECKPOINT_META])  # checked before anything loads them


def verify_checkpoint(directory: str | Path) -> None:
    """Check a checkpoint's files against the SHA-256 recorded when it was saved.

    Raises:
        TamperedFile: names the changed or missing file (a checkpoint without checksums is not intact).
    """
    verify_checksums(directory, "The checkpoint is corrupted: resume from an earlier one or train the trial again.")


def load_classifier(directory: str | Path) -> tuple[Classifier, dict[str, Any]]:
    """Rebuild the trained model from a checkpoint directory (verified first); returns (model, meta).

    Raises:
        TamperedFile: the checkpoint's files are not those it was saved with.
    """
    state, meta = read_state(directory, torch.device("cpu"))
    model = build_classifier(tuple(meta["input_shape"]), len(meta["class_names"]), meta["config"])
    model.load_state_dict(state["model"])
    return model.eval(), meta


def read_state(directory: str | Path, device: torch.device) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state, meta) of one trial checkpoint directory, its files verified against their SHA-256 first.

    Raises:
        TamperedFile: a file is not what it was saved as.
    """
    verify_checkpoint(directory)
    state = torch.load(Path(directory) / CHECKPOINT_STATE, map_location=device, weights_only=True)
    return state, json.loads((Path(directory) / CHECKPOINT_META).read_text())


def newest_intact(checkpoint: Any, checkpoint_type: Any, read: Callable[[Path], T]) -> tuple[T | None, Any, list[str]]:
    """(what ``read`` makes of the newest readable checkpoint, that checkpoint, what was wrong with the
    newer ones): ``checkpoint`` (Ray's latest) first, then the trial's earlier ones (Ray keeps one more).
    A checkpoint ``read`` fails on (:class:`TamperedFile`, or unreadable although intact) is passed
    over; (None, None, problems) when none is readable (the trial starts over)."""
    problems = []
    for candidate in [checkpoint, *earlier_checkpoints(checkpoint, checkpoint_type)]:
        with candidate.as_directory() as directory:
            try:
                found = read(Path(directory))
            except TamperedFile as error:
                problems.append(error.problem)
                continue
            except Exception as error:  # noqa: BLE001 - intact by its hashes but unreadable: same outcome
                problems.append(f"{directory} cannot be read ({type(error).__name__}: {error})")
                continue
        return found, candidate, problems
    return None, None, problems


def resume_state(checkpoint: Any, checkpoint_type: Any, device: torch.device) -> tuple:
    """The newest intact state to resume from (:func:`newest_intact` of :func:`read_state`).

    Returns:
        (state, meta, the checkpoint they came from, what was wrong with the newer ones); state,
        meta and checkpoint are None when no checkpoint is intact (the trial starts over).
    """
    found, candidate, problems = newest_intact(checkpoint, checkpoint_type, lambda d: read_state(d, device))
    state, meta = found if found is not None else (None, None)
    return state, meta, candidate, problems


def saved_epoch(filesystem: Any, path: str) -> int:
    """The epoch after which the checkpoint folder ``path`` (a trial's, or a pack's) on pyarrow
    ``filesystem`` was saved, read from its small JSON file alone: a checkpoint in a bucket is not
    downloaded for it.

    Raises:
        OSError: the folder holds neither file, or it cannot be read.
        ValueError, KeyError: the file is not what a checkpoint writes.
    """
    error: OSError | None = None
    for name in (CHECKPOINT_META, PACK_STATE):  # a trial's checkpoint, a pack's
        try:
            with filesystem.open_input_stream(f"{path}/{name}") as stream:
                return int(json.loads(stream.readall())["epoch"])
        except OSError as missing:  # FileNotFoundError locally; the bucket's own OSError
            error = missing
    raise OSError(f"{path} holds neither {CHECKPOINT_META} nor {PACK_STATE} that can be read ({error})")


def sibling_checkpoints(checkpoint: Any) -> list[str]:
    """The paths of the other ``checkpoint_*`` folders beside Ray ``Checkpoint`` ``checkpoint``, in
    name order (oldest first), in the same storage (a folder or a bucket: ``checkpoint.filesystem``).

    Raises:
        OSError: the storage cannot be listed.
    """
    from pyarrow import fs

    folder, _, name = checkpoint.path.rstrip("/").rpartition("/")
    siblings = checkpoint.filesystem.get_file_info(fs.FileSelector(folder))
    return sorted(info.path for info in siblings if info.type == fs.FileType.Directory
                  and info.base_name.startswith("checkpoint_") and info.base_name != name)  # fmt: skip


def earlier_checkpoints(checkpoint: Any, checkpoint_type: Any) -> list:
    """The trial's other checkpoints older than ``checkpoint``, newest first, in the same storage."""
    name = checkpoint.path.rstrip("/").rpartition("/")[2]
    if not name.startswith("checkpoint_"):
        return []
    try:
        siblings = sibling_checkpoints(checkpoint)
    except (OSError, ValueError):  # the storage cannot be listed: the newest is the only one to try
        return []
    older = [path for path in reversed(siblings) if path.rpartition("/")[2] < name]
    return [checkpoint_type(path, checkpoint.filesystem) for path in older]


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except TypeError:
        return False
