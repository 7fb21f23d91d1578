"""``serving.pyfunc``: the registered model's code, saved as MLflow saves it and loaded back, in the
layout promotion uses now and in the one models were registered with before ``serving/`` existed."""

import warnings
from pathlib import Path

import numpy as np
import torch

from serving.bundle import ServingModel


def _saved_pyfunc(tmp_path, bundle, python_model: str, code_paths: list[str]) -> str:
    """Save a real MLflow pyfunc model from code around ``bundle``, as promotion logs one."""
    import mlflow.pyfunc

    path = str(tmp_path / "model")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's notes on pip requirements and type hints
        mlflow.pyfunc.save_model(
            path, python_model=python_model, artifacts={"bundle": str(bundle)}, code_paths=code_paths,
            pip_requirements=["torch"],
        )  # fmt: skip
    return path


def test_the_registered_model_code_predicts_what_the_serving_model_does(tiny, tmp_path):
    import mlflow.pyfunc

    from serving.pyfunc import CODE_PATHS, MODEL_CODE

    classifier, bundle = tiny
    model = mlflow.pyfunc.load_model(_saved_pyfunc(tmp_path, bundle, MODEL_CODE, CODE_PATHS))
    x = torch.rand(5, 2, 2, 1) * 255
    got = model.predict(x.reshape(5, -1).numpy())
    want = ServingModel(classifier, "images_0_255_nhwc", 0.5)(x)
    assert np.allclose(got["probabilities"], want[0].detach().numpy(), atol=1e-6)
    assert np.array_equal(got["prediction"], want[2].numpy())
    assert sorted(p.name for p in (Path(tmp_path) / "model" / "code").iterdir()) == ["serving", "trainables"]


def test_a_model_registered_before_serving_moved_still_loads(tiny, tmp_path):
    """Before serving/ existed, the model's code was ``from trainables.serving import OvatunePyfunc``
    with only trainables/ as its code; in this process trainables is the project's, so that import
    must still resolve (trainables/serving.py keeps it working)."""
    import mlflow.pyfunc

    import trainables

    old_code = tmp_path / "pyfunc_model.py"
    old_code.write_text(
        "import mlflow\n\nfrom trainables.serving import OvatunePyfunc\n\nmlflow.models.set_model(OvatunePyfunc())\n"
    )
    classifier, bundle = tiny
    model = mlflow.pyfunc.load_model(_saved_pyfunc(tmp_path, bundle, str(old_code), [trainables.__path__[0]]))
    x = torch.rand(2, 2, 2, 1) * 255
    got = model.predict(x.reshape(2, -1).numpy())
    assert np.allclose(got["probabilities"], ServingModel(classifier, "images_0_255_nhwc", 0.5)(x)[0].detach().numpy())
