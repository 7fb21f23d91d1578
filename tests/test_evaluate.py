"""``tuning.evaluate``: the champions loaded and measured, and what the command says when it cannot.
The whole evaluation end to end is in test_end_to_end, test_serving and the dataset tests."""

import shlex
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

import tuning.evaluate
from tuning.cli import main
from tuning.fan_out import ModelKey
from tuning.fan_out import evaluate_models as fan_out

from launch import environment


@pytest.fixture
def local_ray():
    """The local Ray that an in-process ``evaluate`` starts in this process, shut down after the test."""
    import ray

    yield
    ray.shutdown()


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


def test_each_model_is_loaded_once_by_the_task_that_measures_it(home, monkeypatch, capsys, ovatune):
    """The driver used to load every champion too (for two figures and its serving info): now it
    reads only the versions' serving.json, and the Ray task that measures a model is the one that loads it."""
    import mlflow.pyfunc
    import ray

    import serving.bundle

    home = home.parent / "a home"  # with a space: the commands it prints must still run as printed
    ovatune("sweep", "toy2d", "--smoke-test", "--losses", "softmax,dm", "--home", str(home))

    def no_load(*args, **kwargs):
        raise AssertionError("the driver loaded a model")

    monkeypatch.setattr(mlflow.pyfunc, "load_model", no_load)  # the registered pyfunc
    monkeypatch.setattr(serving.bundle, "load_serving_bundle", no_load)  # its weights
    handed: dict = {}  # what the tasks were given to load: resolved by the driver, once
    monkeypatch.setattr(tuning.evaluate, "evaluate_models", lambda *a, **k: handed.update(a[2]) or fan_out(*a, **k))
    try:
        assert main(["evaluate", "toy2d", "--home", str(home)]) == 0, capsys.readouterr().err
    finally:
        ray.shutdown()
    printed = {line.split(":", 1)[0].strip(): line.split(":", 1)[1] for line in capsys.readouterr().out.splitlines()
               if line.startswith(("  browse the runs:", "  ship a model:"))}  # fmt: skip
    assert shlex.split(printed["browse the runs"]) == ["ovatune", "ui", "--home", str(home)]  # quoted: one word
    assert shlex.split(printed["ship a model"])[3:5] == ["--home", str(home)]
    figures = {p.name for p in (home / "reports" / "toy2d" / "figures").iterdir()}
    # drawn from what the tasks computed: the landscape of each model, the centres of the distance one
    assert {"confidence_landscape.png", "class_centres_pca.png"} <= figures
    card = MlflowClient(f"sqlite:///{home / 'mlflow.db'}").get_model_version("ovatune-toy2d-dm", "1").description
    assert "Threshold on confidence" in card  # the model card, from the serving info the driver read

    # Each task loads from where the files are, without an MLflow store of its own (SQLAlchemy's
    # models cost a task 1.1 s): what a task does with what it was handed, in a fresh process.
    assert sorted(handed) == [ModelKey("dm"), ModelKey("softmax")]
    load = (
        "import sys; from tuning.fan_out import _load_classifier; "
        "[_load_classifier(uri, registered=True) for uri in sys.argv[1:]]; "
        "print(sorted(m for m in ('sqlalchemy', 'alembic') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", load, *handed.values()], capture_output=True, text=True,
                            env={**environment(), "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}"})  # fmt: skip
    assert loaded.returncode == 0 and loaded.stdout.strip() == "[]", loaded.stdout + loaded.stderr[-3000:]
