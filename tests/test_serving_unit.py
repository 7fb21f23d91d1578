"""The serving wrapper by hand: threshold rule, outputs, input formats, file hashes, the pyfunc."""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from serving.bundle import (
    ServingModel,
    as_raw_batch,
    choose_threshold,
    load_serving_bundle,
    raw_inputs,
    write_serving_bundle,
)
from trainables.checksums import TamperedFile, check_files, sha256
from trainables.models import build_classifier


def test_threshold_keeps_95_percent_by_hand():
    confidence = np.arange(1, 101) / 100.0  # 0.01 … 1.00
    t = choose_threshold(confidence)
    assert t == pytest.approx(0.06)  # ≥ 0.06 keeps 95 of 100; ≥ 0.07 would keep 94
    assert (confidence >= t).mean() == 0.95
    assert choose_threshold(np.array([0.9, 0.5, 0.7])) == 0.5  # 3 examples: 95% means all three


@pytest.fixture
def tiny(tmp_path):
    torch.manual_seed(0)
    config = {"model": "mlp", "hidden": [4], "loss": "ova_dm"}
    classifier = build_classifier((1, 2, 2), 3, config).eval()
    meta = {"config": config, "input_shape": [1, 2, 2], "class_names": ["a", "b", "c"]}
    info = {"preprocessing": "images_0_255_nhwc", "threshold": 0.5, "raw_input_shape": [2, 2, 1]}
    return classifier, write_serving_bundle(tmp_path / "bundle", classifier, meta, **info)


def test_outputs_by_hand(tiny):
    classifier, _ = tiny
    model = ServingModel(classifier, "images_0_255_nhwc", threshold=0.5)
    raw = torch.tensor([[[[0.0], [255.0]], [[51.0], [102.0]]]])  # (1, 2, 2, 1)
    probabilities, confidence, prediction, none = model(raw)
    expected = classifier.probabilities(torch.tensor([[[[0.0, 1.0], [0.2, 0.4]]]]))  # /255, channels first
    assert torch.allclose(probabilities, expected)
    assert confidence.item() == pytest.approx(expected.max().item())
    assert prediction.item() == expected.argmax().item()
    assert none.item() == (expected.max().item() < 0.5)
    assert torch.equal(raw_inputs("images_0_255_nhwc", raw.permute(0, 3, 1, 2) / 255.0), raw)


def test_inputs_as_dataframe_array_or_dict():
    flat = np.arange(8, dtype=np.float64).reshape(2, 4)
    for given in (flat, flat.reshape(2, 2, 2, 1), pd.DataFrame(flat), {"x": flat}, flat.tolist()):
        batch = as_raw_batch(given, [2, 2, 1])
        assert batch.shape == (2, 2, 2, 1) and batch.dtype == torch.float32
        assert torch.equal(batch.reshape(2, 4), torch.from_numpy(flat).float())


def test_bundle_round_trip_and_tampering(tiny):
    classifier, bundle = tiny
    model, info = load_serving_bundle(bundle)
    x = torch.rand(3, 2, 2, 1) * 255
    assert torch.equal(model(x)[0], ServingModel(classifier, "images_0_255_nhwc", 0.5)(x)[0])
    data = bytearray((bundle / "weights.pt").read_bytes())
    data[-10] ^= 0xFF
    (bundle / "weights.pt").write_bytes(bytes(data))
    with pytest.raises(TamperedFile, match="weights.pt does not match the SHA-256"):
        load_serving_bundle(bundle)


def test_missing_file_is_refused(tmp_path):
    (tmp_path / "a").write_text("x")
    check_files(tmp_path, {"a": sha256(tmp_path / "a")})
    with pytest.raises(TamperedFile, match="found missing"):
        check_files(tmp_path, {"b": "0" * 64})


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
