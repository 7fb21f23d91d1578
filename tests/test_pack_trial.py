"""``trainables.pack_trial``: a pack's Tune trial reports, checkpoints and resumes each member as the
member's own trial would (``trainables.train.train_loop``). Called as test_train calls ``train_loop``:
with ``ray.tune.Checkpoint`` and a recorder of its reports."""

import json
import math
from pathlib import Path

import pytest
import torch
from test_train import CONFIG, Reports, _train

from trainables.checkpoint import load_classifier, verify_checkpoint
from trainables.pack_format import PACK_KEY, member_dir
from trainables.pack_trial import member_configs, train_pack_loop
from trainables.trial_metrics import REPLAY_KEY, SELECTION_METRICS

MEMBERS = [{"lr": 3e-3, "trial_number": 0}, {"lr": 1e-2, "trial_number": 1}, {"lr": 5e-4, "trial_number": 2}]
PACK = {**{k: v for k, v in CONFIG.items() if k != "lr"}, PACK_KEY: MEMBERS}
# With plain SGD and cross-entropy (test_train's diverging trial), lr 1e5 overflows in the first epoch.
SGD = {**PACK, "loss": "softmax", "optimizer": "sgd"}
EXPLODING = {"lr": 1e5, "trial_number": 3}


def _train_pack(tmp_path, config=PACK, checkpoint=None, stops: dict[int, set[int]] | None = None,
                before: dict[int, dict] | None = None) -> Reports:  # fmt: skip
    """Train a pack. The scheduler stops, on each epoch in ``stops``, those members (with that epoch's
    result), and had stopped ``before`` it started those of ``before`` (trial number -> result)."""
    reports = Reports(tmp_path)

    def stopped() -> dict[int, dict]:
        now = dict(before or {})
        for report in reports.metrics:
            for number in (stops or {}).get(report["epoch"], ()):
                now.setdefault(number, members_of(report)[number])
        return now

    train_pack_loop(config, reports, checkpoint, torch.device("cpu"), {"node_id": "n1", "gpu_ids": ""},
                    stopped if stops or before else None)  # fmt: skip
    return reports


def members_of(report: dict) -> dict[int, dict]:
    return {int(n): r for n, r in json.loads(report[PACK_KEY]).items()}


@pytest.mark.parametrize("validation", [{}, {"val_examples": 50}], ids=["whole-split", "val_examples"])
def test_each_member_reports_what_its_trial_alone_reports(tmp_path, validation):
    packed = _train_pack(tmp_path / "pack", {**PACK, **validation})
    assert [r["epoch"] for r in packed.metrics] == [1, 2, 3, 4] and sorted(packed.checkpoints) == [2, 4]
    for member in member_configs(PACK):
        alone = _train(tmp_path / f"alone-{member['trial_number']}", {**CONFIG, **validation, "lr": member["lr"]})
        ours = [members_of(r)[member["trial_number"]] for r in packed.metrics]
        assert [r["epoch"] for r in ours] == [m["epoch"] for m in alone.metrics]
        for mine, theirs in zip(ours, alone.metrics):
            assert set(theirs) - {"data_provenance"} <= set(mine) | {"data_provenance"}  # the same keys
            for name in ["train_loss", "train_accuracy", *SELECTION_METRICS]:
                assert mine[name] == pytest.approx(theirs[name], rel=1e-5, abs=1e-6), (member, name)
            assert mine["learning_rate"] == theirs["learning_rate"] and mine["diverged"] == 0
        assert ours[0]["data_provenance"] == alone.metrics[0]["data_provenance"]  # with the first result only
        assert "data_provenance" not in ours[1]


def test_a_packs_checkpoint_holds_an_ordinary_trial_checkpoint_per_member(tmp_path):
    packed = _train_pack(tmp_path)
    with packed.checkpoints[4].as_directory() as directory:
        for member in member_configs(PACK):
            folder = f"{directory}/{member_dir(member['trial_number'])}"
            verify_checkpoint(folder)  # its SHA-256 file, as every trial checkpoint has
            model, meta = load_classifier(folder)  # what promotion and evaluation load
            assert meta["config"]["lr"] == member["lr"] and meta["epoch"] == 4 and len(meta["history"]) == 4
            assert meta["metrics"]["val_nll"] == members_of(packed.metrics[-1])[member["trial_number"]]["val_nll"]


def test_a_resumed_pack_trains_only_the_epochs_after_its_checkpoint_and_replays_the_rest(tmp_path):
    first = _train_pack(tmp_path / "first")
    resumed = _train_pack(tmp_path / "resumed", checkpoint=first.checkpoints[2])
    assert [r["epoch"] for r in resumed.metrics] == [3, 4]
    for number in range(len(MEMBERS)):
        assert members_of(resumed.metrics[-1])[number]["val_nll"] == members_of(first.metrics[-1])[number]["val_nll"]
        replayed = json.loads(members_of(resumed.metrics[0])[number][REPLAY_KEY])
        assert [e["epoch"] for e in replayed] == [1, 2]  # for the driver to log what its run lacks
        assert REPLAY_KEY not in members_of(resumed.metrics[1])[number]
    again = _train_pack(tmp_path / "again", checkpoint=first.checkpoints[4])  # finished: reported again
    assert len(again.metrics) == 1 and again.metrics[0]["epoch"] == 4
    assert {n: r["val_nll"] for n, r in members_of(again.metrics[0]).items()} == {
        n: r["val_nll"] for n, r in members_of(first.metrics[-1]).items()
    }


def test_a_diverged_member_ends_with_its_reason_and_the_others_go_on_as_alone(tmp_path):
    config = {**SGD, PACK_KEY: [MEMBERS[0], EXPLODING, MEMBERS[1]]}
    packed = _train_pack(tmp_path / "pack", config)
    first = members_of(packed.metrics[0])[3]
    assert first["diverged"] == 1 and "non-finite" in first["stop_reason"] and first["epoch"] == 1
    assert all(math.isnan(first[name]) for name in SELECTION_METRICS) and first["ended"] == 1
    for report in packed.metrics[1:]:  # its final result stays; nothing more of it is trained or saved
        assert json.dumps(members_of(report)[3]) == json.dumps(
            {k: v for k, v in first.items() if k != "data_provenance"}
        )
    with packed.checkpoints[4].as_directory() as directory:
        assert not (Path(directory) / member_dir(3)).exists() and (Path(directory) / member_dir(1)).exists()
    alone = _train(tmp_path / "alone", {**CONFIG, "loss": "softmax", "optimizer": "sgd", "lr": MEMBERS[1]["lr"]})
    assert members_of(packed.metrics[-1])[1]["val_nll"] == pytest.approx(alone.metrics[-1]["val_nll"], rel=1e-5)
    # resumed, the diverged member stays ended and the others go on from the checkpoint
    resumed = _train_pack(tmp_path / "resumed", config, checkpoint=packed.checkpoints[2])
    assert members_of(resumed.metrics[-1])[3]["diverged"] == 1
    assert members_of(resumed.metrics[-1])[1]["val_nll"] == members_of(packed.metrics[-1])[1]["val_nll"]


def test_a_pack_whose_members_all_diverge_ends_at_once(tmp_path):
    config = {**SGD, PACK_KEY: [EXPLODING, {**EXPLODING, "trial_number": 4}]}
    packed = _train_pack(tmp_path, config)
    assert len(packed.metrics) == 1 and not packed.checkpoints
    assert all(r["diverged"] == 1 for r in members_of(packed.metrics[0]).values())


def test_a_member_the_scheduler_stops_leaves_the_pack_and_keeps_the_checkpoint_it_had(tmp_path):
    whole = _train_pack(tmp_path / "whole")
    packed = _train_pack(tmp_path / "pack", stops={3: {1}})  # stopped on its epoch-3 result, between checkpoints
    assert [r["epoch"] for r in packed.metrics] == [1, 2, 3, 4]
    stopped = members_of(packed.metrics[-1])[1]
    assert stopped["ended"] == 1 and stopped["epoch"] == 3 and stopped["diverged"] == 0  # its last result stays
    assert stopped["val_nll"] == members_of(packed.metrics[2])[1]["val_nll"]
    for number in (0, 2):  # the others go on as before, undisturbed
        assert members_of(packed.metrics[-1])[number]["val_nll"] == pytest.approx(
            members_of(whole.metrics[-1])[number]["val_nll"], rel=1e-5
        )
    with packed.checkpoints[4].as_directory() as directory:
        verify_checkpoint(f"{directory}/{member_dir(1)}")
        _, meta = load_classifier(f"{directory}/{member_dir(1)}")  # a trial stopped alone keeps its last: epoch 2
        assert meta["epoch"] == 2 and meta["metrics"]["val_nll"] == members_of(whole.metrics[1])[1]["val_nll"]
        assert load_classifier(f"{directory}/{member_dir(0)}")[1]["epoch"] == 4
        assert json.loads((Path(directory) / "pack.json").read_text())["ended"]["1"]["epoch"] == 3
    # resumed from that checkpoint, it stays stopped and keeps its checkpoint
    again = _train_pack(tmp_path / "again", checkpoint=packed.checkpoints[4])
    assert members_of(again.metrics[-1])[1]["ended"] == 1
    with again.checkpoints[4].as_directory() as directory:
        assert load_classifier(f"{directory}/{member_dir(1)}")[1]["epoch"] == 2


def test_a_pack_started_again_ends_a_member_stopped_after_its_checkpoint_with_the_stops_result(tmp_path):
    packed = _train_pack(tmp_path / "pack", stops={3: {1}})
    stop = members_of(packed.metrics[2])[1]  # the result the scheduler stopped it on (epoch 3)
    # a node lost after the stop: the pack starts again from its epoch-2 checkpoint, where member 1 trained
    resumed = _train_pack(tmp_path / "resumed", checkpoint=packed.checkpoints[2], before={1: stop})
    assert [r["epoch"] for r in resumed.metrics] == [3, 4]
    for report in resumed.metrics:  # not trained again: it ends with the result it was stopped on
        mine = members_of(report)[1]
        assert mine["ended"] == 1 and mine["epoch"] == 3 and mine["val_nll"] == stop["val_nll"]
        assert "data_provenance" not in mine
    assert members_of(resumed.metrics[-1])[0]["val_nll"] == members_of(packed.metrics[-1])[0]["val_nll"]
    with resumed.checkpoints[4].as_directory() as directory:  # the checkpoint it had at its stop: epoch 2
        assert load_classifier(f"{directory}/{member_dir(1)}")[1]["epoch"] == 2


def test_a_pack_ends_when_the_scheduler_has_stopped_every_member(tmp_path):
    packed = _train_pack(tmp_path, stops={1: {0}, 2: {1, 2}})
    assert [r["epoch"] for r in packed.metrics] == [1, 2]  # nothing trained after the last stop
    first = members_of(packed.metrics[-1])[0]
    assert first["ended"] == 1 and first["epoch"] == 1
    with packed.checkpoints[2].as_directory() as directory:  # stopped before its first checkpoint: it has none
        assert not (Path(directory) / member_dir(0)).exists() and (Path(directory) / member_dir(2)).is_dir()
