"""``tuning.evaluate``: the champions loaded and measured, and what the command says when it cannot.
The whole evaluation end to end is in test_end_to_end (where what the driver loads is watched on the
toy2d sweep), test_serving and the dataset tests."""

import subprocess
import sys

from mlflow.tracking import MlflowClient

from tuning.cli import main

from launch import environment


def test_no_champion_is_the_users_to_fix_and_an_unloadable_one_is_a_failure(home, capsys, local_ray):
    assert main(["evaluate", "digits"]) == 2  # nothing swept yet: run a sweep first
    assert "run `ovatune sweep digits`" in capsys.readouterr().err

    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    name = "ovatune-digits-ova"
    client.create_registered_model(name)
    gone = home / "gone"  # a champion whose artifacts are missing
    version = client.create_model_version(name, source=gone.as_uri())
    client.set_registered_model_alias(name, "champion", version.version)
    assert main(["evaluate", "digits"]) == 1  # the exit code came from matching the message's text
    (line,) = capsys.readouterr().err.strip().splitlines()[:1]
    assert line == "ovatune: error: no champion could be evaluated:"


def test_no_champion_is_said_before_the_evaluations_code_is_imported(tmp_path):
    # The evaluation's code (torch, matplotlib, MLflow's model code) took 5 s to import, only to be told
    # there is nothing to evaluate: the refusal comes from what the store says, alone.
    probe = (
        "import sys; from tuning.cli import main; code = main(sys.argv[1:]); "
        "print(code, [m for m in ('tuning.evaluate', 'tuning.fan_out', 'torch', 'matplotlib', 'ray') if m in sys.modules])"
    )
    for extra in ([], ["--sweep", "unregistered"]):
        argv = ["evaluate", "digits", "--home", str(tmp_path), *extra]
        ran = subprocess.run([sys.executable, "-c", probe, *argv], env=environment(), capture_output=True, text=True,
                             timeout=120)  # fmt: skip
        assert ran.stdout.strip() == "2 []", ran.stdout + ran.stderr
        assert ran.stderr.startswith("ovatune: error: ") and len(ran.stderr.splitlines()) == 1, ran.stderr
        assert ("sweep 'unregistered' registered no model" if extra else "run `ovatune sweep digits`") in ran.stderr
