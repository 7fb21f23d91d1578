"""Ctrl-C and SIGTERM during a sweep: a clean stop, nothing promoted, and the printed command resumes it.

Real signals to a real `ovatune sweep` (its own process group, as a terminal's Ctrl-C reaches it),
a real local Ray and MLflow store.
"""

import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from launch import run_ovatune, signal_when, sigterm_at_mark, start_ovatune

pytestmark = pytest.mark.slow

EPOCHS = 20


def _reported(results: Path) -> int:
    lines = 0
    for path in results.glob("*/result.json"):
        lines += sum(1 for line in path.read_text().splitlines() if line.strip())
    return lines


SWEEP = ("sweep", "digits", "--losses", "softmax,ova_dm", "--trials", "3", "--epochs", str(EPOCHS), "--name", "stopped")


def _start_and_stop(home: Path, signum: int, to_group: bool, args=SWEEP) -> subprocess.CompletedProcess:
    """``ovatune *args`` (named by its ``--name``) stopped by ``signum`` a few epochs in."""
    sweep = start_ovatune(*args, home=home, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True)  # fmt: skip
    name = args[args.index("--name") + 1]
    output = signal_when(sweep, lambda: _reported(home / "ray_results" / name) >= 3, signum, to_group,
                         what="some epochs in")  # fmt: skip
    return subprocess.CompletedProcess(sweep.args, sweep.returncode, output)


def _runs(home: Path) -> tuple[MlflowClient, list]:
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    return client, client.search_runs([client.get_experiment_by_name("digits").experiment_id], max_results=1000)


def test_ctrl_c_stops_cleanly_promotes_nothing_and_the_printed_command_resumes(home, in_process):
    stopped = _start_and_stop(home, signal.SIGINT, to_group=True)
    assert stopped.returncode == 130, stopped.stdout[-3000:]
    assert "Tuner.restore" not in stopped.stdout and "Traceback" not in stopped.stdout
    assert "diverged" not in stopped.stdout and "@champion" not in stopped.stdout
    command = stopped.stdout.strip().splitlines()[-1].strip()
    assert command == f"ovatune sweep digits --resume --name stopped --home {home}"

    client, runs = _runs(home)
    assert client.search_registered_models() == []  # nothing half-trained was promoted
    assert not [r for r in runs if r.info.status == "RUNNING"]
    parents = [r for r in runs if r.data.tags["ovatune.kind"] == "parent"]
    assert len(parents) == 2
    assert all(p.info.status == "KILLED" and p.data.tags["ovatune.outcome"] == "interrupted" for p in parents)
    trials = [r for r in runs if r.data.tags["ovatune.kind"] == "trial"]
    unfinished = [t for t in trials if t.data.tags["ovatune.outcome"] != "completed"]
    assert unfinished and all(t.data.tags["ovatune.outcome"] == "interrupted" for t in unfinished)
    assert all(t.info.status == "KILLED" for t in unfinished)

    in_process(*shlex.split(command)[1:], check=True)
    client, runs = _runs(home)
    trials = [r for r in runs if r.data.tags["ovatune.kind"] == "trial"]
    assert len(trials) == 6 and all(t.info.status == "FINISHED" for t in trials)
    for trial in trials:
        steps = [m.step for m in client.get_metric_history(trial.info.run_id, "train_loss")]
        assert steps == list(range(1, EPOCHS + 1)), trial.info.run_name  # every epoch once
    assert {m.name for m in client.search_registered_models()} == {"ovatune-digits-softmax", "ovatune-digits-ova_dm"}
    parents = [r for r in runs if r.data.tags["ovatune.kind"] == "parent"]  # the resume cleared the stop
    assert all(p.info.status == "FINISHED" and "ovatune.outcome" not in p.data.tags for p in parents)
    assert not any("ovatune.stop_reason" in p.data.tags for p in parents)

    # a replicate set of those champions stops the same way, and says how it resumes
    replicate = ("replicate", "digits", "--replicates", "2", "--name", "reps")
    stopped = _start_and_stop(home, signal.SIGINT, to_group=True, args=replicate)
    assert stopped.returncode == 130, stopped.stdout[-3000:]
    assert "replicate set reps interrupted (SIGINT)" in stopped.stdout and "Traceback" not in stopped.stdout
    command = stopped.stdout.strip().splitlines()[-1].strip()
    assert command == f"ovatune replicate digits --resume --name reps --home {home}"
    client, runs = _runs(home)
    replicates = [r for r in runs if r.data.tags["ovatune.kind"] in ("replicates", "replicate")]
    assert len(replicates) > 2 and not [r for r in replicates if r.info.status == "RUNNING"]
    assert all(command in r.data.tags["ovatune.stop_reason"] for r in replicates if r.info.status == "KILLED")


def test_sigterm_to_the_driver_stops_it_the_same_way(home):
    stopped = _start_and_stop(home, signal.SIGTERM, to_group=False)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stdout[-3000:]
    assert "interrupted (SIGTERM)" in stopped.stdout and "--resume --name stopped" in stopped.stdout
    client, runs = _runs(home)
    assert client.search_registered_models() == []
    assert not [r for r in runs if r.info.status in ("RUNNING", "FINISHED") and r.data.tags["ovatune.kind"] == "parent"]
    state = json.loads(next((home / "ray_results" / "stopped").glob("experiment_state-*.json")).read_text())
    assert state  # Tune saved the experiment's state for --resume


def test_a_stop_passes_through_library_code_that_catches_every_exception():
    """MLflow's store wraps whatever ``Exception`` reaches it in an MlflowException: a stop raised
    there must still reach the command as a stop (it is a BaseException, as KeyboardInterrupt is)."""
    from tuning.interruption import Stopped, stop_on_signals

    def library_call():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except Exception as error:  # what MLflow's session maker does
            raise RuntimeError("wrapped") from error

    with pytest.raises(Stopped) as stopped, stop_on_signals():
        library_call()
    assert stopped.value.signum == signal.SIGTERM


def test_sigterm_while_promoting_leaves_no_half_registered_version_and_the_resume_finishes(home, tmp_path, in_process):
    """SIGTERM (a job scheduler's stop) after the trials, while a model is being registered: it used
    to end the process on the spot, parents RUNNING and a version without tags in the registry."""
    args = ("sweep", "digits", "--losses", "softmax,ova", "--trials", "1", "--epochs", "2", "--name", "promoting")
    returncode, output, errors = sigterm_at_mark("model logged", args, home, tmp_path)
    assert returncode == 128 + signal.SIGTERM, output[-3000:] + errors[-3000:]
    assert "sweep promoting interrupted while promoting (SIGTERM)" in output
    assert "Traceback" not in output + errors
    client, runs = _runs(home)
    for loss in ("softmax", "ova"):  # the model logged when the signal came was unregistered again
        assert client.search_model_versions(f"name = 'ovatune-digits-{loss}'") == []
    assert all(r.info.status == "FINISHED" for r in runs if r.data.tags["ovatune.kind"] == "trial")
    parents = [r for r in runs if r.data.tags["ovatune.kind"] == "parent"]
    assert len(parents) == 2 and all(p.data.tags.get("ovatune.outcome") == "interrupted" for p in parents)

    command = output.strip().splitlines()[-1].strip()
    assert command == f"ovatune sweep digits --resume --name promoting --home {home}"
    in_process(*shlex.split(command)[1:], check=True)  # promotes what was left
    client, runs = _runs(home)
    for loss in ("softmax", "ova"):
        (version,) = client.search_model_versions(f"name = 'ovatune-digits-{loss}'")
        assert version.tags["sweep"] == "promoting" and "smoke_test" in version.tags
        assert client.get_model_version_by_alias(f"ovatune-digits-{loss}", "champion").version == version.version
    assert all(r.info.status == "FINISHED" for r in runs if r.data.tags["ovatune.kind"] in ("parent", "trial"))


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    """A home with a finished smoke sweep of softmax and ova, which the evaluation and export tests
    stop midway (they run on one worker: ``xdist_group``; neither changes what the other reads)."""
    home = tmp_path_factory.mktemp("swept") / "home"
    run_ovatune("sweep", "digits", "--smoke-test", "--losses", "softmax,ova", home=home, timeout=600, check=True)
    return home


@pytest.mark.xdist_group("test_interruption_swept")
def test_sigterm_during_evaluation_says_what_was_left_and_how_to_evaluate_again(swept, tmp_path, in_process):
    """SIGTERM while the champions are measured: it used to exit 1 with no message and no report."""
    home = swept
    returncode, output, errors = sigterm_at_mark("champions found", ("evaluate", "digits"), home, tmp_path)
    assert returncode == 128 + signal.SIGTERM, output[-3000:] + errors[-3000:]
    assert "evaluation of digits interrupted (SIGTERM)" in output and "Traceback" not in output + errors
    assert not (home / "reports" / "digits" / "report.md").exists()
    command = output.strip().splitlines()[-1].strip()
    assert command == f"ovatune evaluate digits --home {home}"
    in_process(*shlex.split(command)[1:], check=True)
    assert (home / "reports" / "digits" / "report.md").exists()


@pytest.mark.xdist_group("test_interruption_swept")
def test_sigterm_during_export_leaves_every_export_whole_and_says_what_is_left(swept, tmp_path, in_process):
    """SIGTERM while a champion's files are written: it used to end the process on the spot, leaving
    a partial folder beside the export (or, between its two renames, no export at all)."""
    from serving import ExportedModel

    home = swept
    out = tmp_path / "exports"
    export = ("export", "digits", "--format", "torchscript", "--out", str(out))
    in_process(*export, "--home", str(home), check=True)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    returncode, output, errors = sigterm_at_mark("export written", export, home, tmp_path)
    assert returncode == 128 + signal.SIGTERM, output[-3000:] + errors[-3000:]
    assert "export interrupted (SIGTERM): nothing exported; softmax, ova not" in output
    assert "Traceback" not in output + errors
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # the earlier export, untouched
    assert not [p for p in out.rglob(".*")]  # no partial folder
    command = output.strip().splitlines()[-1].strip()
    assert command == f"ovatune export digits --losses softmax,ova --format torchscript --out {out} --home {home}"
    in_process(*shlex.split(command)[1:], check=True)
    for loss in ("softmax", "ova"):
        ExportedModel(out / loss / "torchscript")  # whole, and its files match its manifest
