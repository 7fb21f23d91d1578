"""Packs on the driver's side (``tuning.packs``, ``PerLossSearch(pack=K)``, ``--pack``): each member
of a pack is the trial it stands for, to the searcher, MLflow, the progress line and promotion. The
pack's training itself is test_pack (the arithmetic) and test_pack_trial (its reports and checkpoints).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient
from ray.tune import Checkpoint, Result

from search_spaces import get_space
from trainables.pack_format import PACK_KEY, member_dir
from tuning.packs import member_results, members_of, trial_results
from tuning.sweep import PerLossSearch

from launch import start_ovatune

DIGITS = get_space("digits")


def _draws(search: PerLossSearch, tune_trials: int) -> dict[tuple[str, int], dict]:
    """(loss, trial number) -> sampled values, of every trial the searcher hands out."""
    drawn = {}
    for i in range(tune_trials):
        config = search.suggest(f"t{i}")
        for member in config.get(PACK_KEY, [config]):
            drawn[(member["loss"], member["trial_number"])] = {k: member[k] for k in DIGITS.ranges}
    return drawn


def test_a_packed_sweep_draws_the_same_trials_as_one_trial_per_worker():
    one_by_one = _draws(PerLossSearch(DIGITS, ["softmax", "ova_dm"], 5, seed=3), 10)
    search = PerLossSearch(DIGITS, ["softmax", "ova_dm"], 5, seed=3, pack=2)
    packs = [search.suggest(f"p{i}") for i in range(6)]  # per loss: 2 + 2 + 1
    assert [len(p[PACK_KEY]) for p in packs] == [2, 2, 2, 2, 1, 1]
    assert search.suggest("p6") == PerLossSearch.FINISHED
    assert all({m["loss"] for m in p[PACK_KEY]} == {p["loss"]} for p in packs)  # a pack is one loss
    packed = {(m["loss"], m["trial_number"]): {k: m[k] for k in DIGITS.ranges} for p in packs for m in p[PACK_KEY]}
    assert packed == one_by_one and len(packed) == 10


def test_each_members_result_reaches_its_own_optuna_trial():
    search = PerLossSearch(DIGITS, ["softmax"], 2, seed=0, pack=2)
    search.suggest("p0")
    members = {"0": {"val_accuracy": 0.5, "epoch": 1}, "1": {"val_accuracy": 0.75, "epoch": 1}}
    search.on_trial_complete("p0", {"training_iteration": 1, PACK_KEY: json.dumps(members)})
    study = search.searchers["softmax"]._ot_study
    assert sorted(t.value for t in study.trials) == [0.5, 0.75]


def test_a_packs_result_becomes_one_result_per_member_with_its_own_checkpoint(tmp_path):
    for number in (0, 1):
        (tmp_path / member_dir(number)).mkdir()
    members = {"0": {"val_accuracy": 0.9, "epoch": 2}, "2": {"val_accuracy": float("nan"), "diverged": 1, "ended": 1},
               "1": {"val_accuracy": 0.5, "epoch": 1, "diverged": 0, "ended": 1}}  # fmt: skip
    config = {"epochs": 2, "loss": "softmax", PACK_KEY: [{"trial_number": 0, "lr": 0.1}, {"trial_number": 2, "lr": 9},
                                                         {"trial_number": 1, "lr": 1e-4}]}  # fmt: skip
    pack = Result(metrics={"epoch": 2, PACK_KEY: json.dumps(members), "config": config},
                  checkpoint=Checkpoint.from_directory(str(tmp_path)), error=None, path=str(tmp_path))  # fmt: skip
    first, diverged, stopped = trial_results([pack])
    # stopped by the scheduler: the checkpoint it had stays a candidate, as a trial stopped alone
    assert stopped.metrics["epoch"] == 1 and stopped.checkpoint.path.endswith(member_dir(1))
    assert first.config == {"epochs": 2, "loss": "softmax", "trial_number": 0, "lr": 0.1}
    assert first.metrics["val_accuracy"] == 0.9 and first.checkpoint.path.endswith(member_dir(0))
    assert diverged.metrics["diverged"] == 1 and diverged.checkpoint is None  # it ended: nothing to promote
    assert set(member_results(pack.metrics)) == {0, 1, 2}


class _Trial:
    def __init__(self, config, last_result):
        self.trial_id, self.config, self.last_result, self.status, self.checkpoint = (
            "abc",
            config,
            last_result,
            "RUNNING",
            None,
        )


def test_a_member_is_seen_as_a_trial_of_its_own():
    config = {"loss": "ova", PACK_KEY: [{"trial_number": 4, "lr": 0.1}, {"trial_number": 5, "lr": 0.2}]}
    result = {"training_iteration": 3, PACK_KEY: json.dumps({"4": {"epoch": 3}, "5": {"epoch": 1, "ended": 1}})}
    four, five = members_of(_Trial(config, result))
    assert (four.trial_id, four.config, four.status) == (
        "abc/4",
        {"loss": "ova", "trial_number": 4, "lr": 0.1},
        "RUNNING",
    )
    assert four.last_result == {"training_iteration": 3, "epoch": 3}
    assert five.status == "TERMINATED" and five.ended  # diverged before its pack ends
    plain = _Trial({"loss": "ova", "trial_number": 1}, {})
    assert members_of(plain) == [plain]


def test_a_pack_across_workers_is_refused_before_ray_starts(home, in_process):
    refused = in_process("sweep", "digits", "--pack", "2", "--workers-per-trial", "2")
    assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1] == (
        "ovatune: error: --pack 2 trains its trials in one worker: use --pack 1 with --workers-per-trial"
    )
    assert "Traceback" not in refused.stderr and not (home / "ray_results").exists()  # refused before anything ran


def _trial_runs(client: MlflowClient) -> list:
    experiment = client.get_experiment_by_name("digits").experiment_id
    return client.search_runs([experiment], "tags.`ovatune.kind` = 'trial'", max_results=100)


@pytest.mark.slow
def test_a_packed_sweep_logs_checkpoints_and_promotes_each_member_as_a_trial_and_resumes_after_a_kill(home, in_process):
    args = ("sweep", "digits", "--losses", "softmax,ova_dm", "--trials", "3", "--pack", "2", "--epochs", "6",
            "--set", "checkpoint_every=2", "--name", "packed")  # fmt: skip
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    process = start_ovatune(*args, home=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    try:  # killed (driver, Ray, everything) once a member is past its first checkpoint
        deadline = time.time() + 300
        while not any(len(client.get_metric_history(r.info.run_id, "train_loss")) >= 3 for r in _runs_or_none(client)):
            assert time.time() < deadline and process.poll() is None, "the sweep ended before the kill"
            time.sleep(0.3)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert any(r.info.status == "RUNNING" for r in _trial_runs(client))  # killed mid-pack
    resumed = in_process("sweep", "digits", "--resume", "--name", "packed", check=True)
    assert "Traceback" not in resumed.stdout + resumed.stderr
    assert "sweep packed: 6 trials" in resumed.stdout  # the members, not the 4 packs
    runs = _trial_runs(client)
    assert sorted((r.data.tags["ovatune.loss"], int(r.data.tags["ovatune.trial_number"])) for r in runs) == [
        (loss, n) for loss in ("ova_dm", "softmax") for n in range(3)
    ]  # one run per member, none twice
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.tags["ovatune.outcome"] == "completed"
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
        assert sorted(steps) == [1, 2, 3, 4, 5, 6], (run.info.run_name, steps)  # each epoch once, after the kill too
        assert "lr" in run.data.params and PACK_KEY not in run.data.params
    for loss in ("softmax", "ova_dm"):  # promotion registered a member's checkpoint, as any trial's
        (version,) = client.search_model_versions(f"name = 'ovatune-digits-{loss}'")
        assert version.tags["sweep"] == "packed" and int(version.tags["trial_number"]) in range(3)


def _runs_or_none(client: MlflowClient) -> list:
    try:
        return _trial_runs(client)
    except Exception:  # noqa: BLE001 - the store or the experiment is not there yet
        return []


def test_the_default_pack_is_the_spaces_measured_one_where_packs_can_run():
    from tuning.sweep import default_pack

    assert default_pack(DIGITS, 1, 0.0, dict(DIGITS.fixed)) == DIGITS.pack_on_cpu == 8  # with ASHA too
    assert default_pack(DIGITS, 2, 0.0, {}) == 1  # a multi-worker trial
    assert default_pack(DIGITS, 1, 1.0, {}) == 1  # GPUs: not measured there yet
    assert default_pack(DIGITS, 1, 0.0, {"micro_batch_size": 16}) == 1
    assert get_space("cifar10").pack_on_cpu == 1  # a ResNet-20 pack is slower on the CPU


def test_an_explicit_pack_with_micro_batches_is_refused_before_ray_starts(home, in_process):
    refused = in_process("sweep", "digits", "--pack", "4", "--set", "micro_batch_size=16")
    assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1] == (
        "ovatune: error: --pack 4 takes whole batches without torch.compile: use --pack 1 with micro_batch_size"
    )


@pytest.mark.slow
def test_asha_stops_a_packs_members_one_by_one_as_it_stops_trials(home, in_process):
    from ray.tune.schedulers import ASHAScheduler

    in_process("sweep", "digits", "--losses", "softmax", "--trials", "8", "--pack", "8", "--epochs", "12",
               "--scheduler", "asha", "--name", "asha", check=True)  # fmt: skip
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    runs = {int(r.data.tags["ovatune.trial_number"]): r for r in _trial_runs(client)}
    assert sorted(runs) == list(range(8))
    curves = {n: [m.value for m in sorted(client.get_metric_history(r.info.run_id, DIGITS.metric),
                                          key=lambda m: m.step)] for n, r in runs.items()}  # fmt: skip
    # Ray Tune's ASHA, fed each member's curve as the pack reported them (epoch by epoch, in member
    # order), stops exactly the members the sweep stopped, at the same epochs.
    asha = ASHAScheduler(time_attr="training_iteration", metric=DIGITS.metric, mode=DIGITS.mode, max_t=12,
                         grace_period=1)  # fmt: skip
    trials = {n: SimpleNamespace(trial_id=str(n)) for n in runs}  # a trial as ASHA sees one: its id
    for trial in trials.values():
        asha.on_trial_add(None, trial)
    expected_last, live = {}, set(runs)
    for epoch in range(1, 13):
        for n in sorted(live):
            if (
                asha.on_trial_result(
                    None, trials[n], {"training_iteration": epoch, DIGITS.metric: curves[n][epoch - 1]}
                )
                == "STOP"
                and epoch < 12
            ):
                expected_last[n] = epoch
                live.discard(n)
    assert expected_last and live  # the rungs stopped some and kept some
    for n, run in runs.items():
        if n in expected_last:
            assert run.data.tags["ovatune.outcome"] == "stopped" and run.info.status == "KILLED", n
            assert run.data.tags["ovatune.stop_reason"] == "stopped early by the scheduler"
            assert len(curves[n]) == expected_last[n], n  # nothing trained (or logged) after its stop
        else:
            assert run.data.tags["ovatune.outcome"] == "completed" and len(curves[n]) == 12, n
    # a stopped member costs nothing more: the pack trained only the members still live
    (result_file,) = (home / "ray_results" / "asha").glob("*/result.json")
    training = [sum(not m.get("ended") for m in json.loads(json.loads(line)[PACK_KEY]).values())
                for line in result_file.read_text().splitlines()]  # fmt: skip
    assert training == [sum(expected_last.get(n, 13) >= epoch for n in runs) for epoch in range(1, 13)]


@pytest.fixture
def one_cpu_ray():
    import ray

    ray.init(num_cpus=1, num_gpus=0, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


def test_after_a_driver_restart_asha_reads_a_packs_stops_back_and_tells_the_pack(one_cpu_ray):
    import pickle

    from trainables.pack_stops import stopped_members
    from tuning.sweep import PerLossASHA

    # the scheduler as the restarted driver has it: unpickled from the sweep's start (tuner.pkl)
    asha = pickle.loads(pickle.dumps(PerLossASHA("val_accuracy", "max", max_t=12)))
    own = {"0": {"epoch": 5, "val_accuracy": 0.9, "diverged": 0},
           "1": {"epoch": 4, "val_accuracy": 0.5, "diverged": 0, "ended": 1},  # stopped at its rung
           "2": {"epoch": 2, "val_accuracy": float("nan"), "diverged": 1, "ended": 1}}  # fmt: skip
    members = [{"trial_number": n, "lr": 0.1 * (n + 1)} for n in range(3)]
    pack = SimpleNamespace(trial_id="p1", experiment_dir_name="restarted", status="PENDING", checkpoint=None,
                           config={"loss": "softmax", "epochs": 12, PACK_KEY: members},
                           last_result={"training_iteration": 5, PACK_KEY: json.dumps(own)})  # fmt: skip
    asha.on_trial_add(None, pack)  # Tune adds the restored pack again
    # the pack, started again from an older checkpoint, is told before its first epoch (the diverged
    # member ended on its own, and pack.json says so)
    assert stopped_members("restarted", "p1")() == {1: {**own["1"]}}
    again = {"training_iteration": 5, PACK_KEY: json.dumps({"0": {"epoch": 5, "val_accuracy": 0.9, "diverged": 0},
                                                             "1": {"epoch": 5, "val_accuracy": 0.6, "diverged": 0}})}  # fmt: skip
    assert asha.on_trial_result(None, pack, again) == "CONTINUE"  # member 0 goes on; 1 is stopped again
    assert set(stopped_members("restarted", "p1")()) == {1}
    assert stopped_members("another-sweep", "p1") is None  # a sweep whose scheduler stops no member
