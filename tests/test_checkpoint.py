"""Checkpoint integrity without Ray's scheduler: SHA-256 recorded on save, checked before every load,
and a resume that passes over a corrupted checkpoint to the trial's previous intact one.

Corruption is real: one byte flipped inside a float of the weights, or inside the pickle that
describes them, in the ``state.pt`` zip that ``torch.save`` writes.
"""

import json
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from ray.train import Checkpoint

from trainables.checkpoint import CHECKPOINT_STATE, load_classifier, resume_state, save_checkpoint
from trainables.checksums import CHECKSUMS_FILE, TamperedFile
from trainables.models import build_classifier
from trainables.optim import build_optimizer
from trainables.train import cached_dataset

CONFIG = {"dataset": "digits", "model": "mlp", "hidden": [8], "optimizer": "adam", "lr": 1e-3,
          "batch_size": 64, "epochs": 3, "seed": 0, "loss": "softmax"}  # fmt: skip


def flip_byte(state_file: Path, member: str) -> None:
    """Flip every bit of the middle byte of ``member`` ('data/0': the first tensor's floats;
    'data.pkl': the pickle) inside a ``torch.save`` zip, as a disk or copy error would."""
    with zipfile.ZipFile(state_file) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("/" + member))
    raw = bytearray(state_file.read_bytes())
    name_length, extra_length = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_length + extra_length  # the member's bytes (stored, not deflated)
    raw[start + info.file_size // 2] ^= 0xFF
    state_file.write_bytes(bytes(raw))


def _checkpoints(trial_dir: Path, epochs: int) -> list[Path]:
    """A trial folder as Ray keeps it: checkpoint_000000 ... one per epoch."""
    data = cached_dataset(CONFIG)
    torch.manual_seed(0)
    model = build_classifier(data.input_shape, data.num_classes, CONFIG)
    optimizer = build_optimizer(model, CONFIG)
    folders = []
    for epoch in range(1, epochs + 1):
        folder = trial_dir / f"checkpoint_{epoch - 1:06d}"
        folder.mkdir(parents=True)
        with torch.no_grad():
            next(model.parameters()).add_(1.0)  # each epoch's weights differ
        save_checkpoint(folder, model, optimizer, epoch, CONFIG, data, {"val_accuracy": epoch / 10})
        folders.append(folder)
    return folders


@pytest.mark.parametrize("member", ["data/0", "data.pkl"])
def test_a_flipped_byte_is_refused_naming_the_file(tmp_path, member):
    (folder,) = _checkpoints(tmp_path, 1)
    assert set(json.loads((folder / CHECKSUMS_FILE).read_text())) == {"state.pt", "meta.json"}
    load_classifier(folder)  # intact: loads
    flip_byte(folder / CHECKPOINT_STATE, member)
    with pytest.raises(TamperedFile, match=f"{folder / CHECKPOINT_STATE} does not match the SHA-256"):
        load_classifier(folder)


def test_a_checkpoint_without_checksums_is_not_intact(tmp_path):
    (folder,) = _checkpoints(tmp_path, 1)
    (folder / CHECKSUMS_FILE).unlink()
    with pytest.raises(TamperedFile, match="checksums.json is missing"):
        load_classifier(folder)


@pytest.mark.parametrize("member", ["data/0", "data.pkl"])
def test_resume_passes_over_a_corrupted_checkpoint_to_the_previous_intact_one(tmp_path, member):
    folders = _checkpoints(tmp_path / "trial", 3)
    flip_byte(folders[-1] / CHECKPOINT_STATE, member)
    state, meta, source, problems = resume_state(Checkpoint.from_directory(str(folders[-1])), Checkpoint, "cpu")
    assert state["epoch"] == 2 and meta["metrics"] == {"val_accuracy": 0.2}
    assert Path(source.path) == folders[1]
    (problem,) = problems
    assert str(folders[-1] / CHECKPOINT_STATE) in problem and "does not match the SHA-256" in problem
    # the state it resumes from is that checkpoint's own, not the corrupted one's
    expected = torch.load(folders[1] / CHECKPOINT_STATE, weights_only=True)["model"]
    assert all(torch.equal(state["model"][k], expected[k]) for k in expected)


def test_resume_with_no_intact_checkpoint_starts_over(tmp_path):
    folders = _checkpoints(tmp_path / "trial", 2)
    for folder in folders:
        flip_byte(folder / CHECKPOINT_STATE, "data/0")
    state, meta, source, problems = resume_state(Checkpoint.from_directory(str(folders[-1])), Checkpoint, "cpu")
    assert (state, meta, source) == (None, None, None) and len(problems) == 2
