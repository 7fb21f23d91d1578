"""``serving.pyfunc``: the registered model's code, saved as MLflow saves it and loaded back, in the
layout promotion uses now and in the one models were registered with before ``serving/`` existed,
and the code each model carries: enough for every registered architecture, alone."""

import json
import subprocess
import sys
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


# A tiny body of each registered architecture: (model input shape, its config, the preprocessing of its datasets)
TINY_MODELS = {
    "mlp": ((1, 2, 2), {"hidden": [4]}, "images_0_255_nhwc"),
    "resnet20": ((3, 8, 8), {"depth": 8, "width": 4}, "images_0_255_nhwc_unscaled"),
    "wide_resnet28_10": ((3, 8, 8), {"depth": 10, "widen": 1, "width": 4}, "images_0_255_nhwc_unscaled"),
    "resnet50": ((3, 32, 32), {"width": 4}, "images_0_255_nhwc_unscaled"),
    "bert_mini": ((32,), {"width": 16, "depth": 1, "heads": 2, "intermediate": 32, "pad_id": 0}, "token_ids"),
}
TEXTS = ["book a flight to paris", "what is my account balance", "play some jazz music", "set an alarm for six"]

# Loads each saved model in a fresh Python outside the project's folder, with the project's own import
# route (its editable install) removed: the project's code can only come from the model's code/ folder.
ALONE = """
import json, sys
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
sys.path[:] = [p for p in sys.path if "__editable__" not in p]
import mlflow.pyfunc, numpy as np

def project_modules():
    return {n: m for n, m in sys.modules.items() if n.split(".")[0] in ("serving", "trainables")}

answers = {}
for name, case in json.load(open(sys.argv[1])).items():
    for module in project_modules():  # each model as in a Python of its own
        del sys.modules[module]
    model = mlflow.pyfunc.load_model(case["path"])
    sent = case["input"] if name == "bert_mini" else np.array(case["input"], dtype=np.float32)
    got = model.predict(sent)
    answers[name] = {"probabilities": got["probabilities"].tolist(),
                     "from": {n: m.__file__ for n, m in project_modules().items()}}
print(json.dumps(answers))
"""


def test_every_registered_architecture_loads_and_predicts_with_only_the_code_its_model_carries(tmp_path):
    from serving.bundle import ServingModel, raw_inputs, write_serving_bundle
    from serving.pyfunc import CODE_PATHS, MODEL_CODE
    from trainables.data.clinc import encode, train_tokenizer
    from trainables.models import MODELS, build_classifier

    assert set(TINY_MODELS) == set(MODELS)  # a new architecture gets a tiny one here
    code = CODE_PATHS
    torch.manual_seed(0)
    cases, wanted = {}, {}
    for name, (shape, settings, preprocessing) in TINY_MODELS.items():
        config = {"model": name, "loss": "ova_dm", **settings}
        meta = {"config": config, "input_shape": list(shape), "class_names": ["a", "b", "c"]}
        if name == "bert_mini":  # a text model: sent text, which it tokenizes with its own tokenizer
            tokenizer = train_tokenizer(TEXTS * 8, vocab_size=64)
            config["vocab_size"] = tokenizer.get_vocab_size()
            meta["tokenizer"] = tokenizer.to_str()
            raw = raw_inputs(preprocessing, encode(tokenizer, TEXTS))
            sent = TEXTS
        else:
            raw = raw_inputs(preprocessing, torch.rand(4, *shape))
            sent = raw.reshape(len(raw), -1).tolist()
        classifier = build_classifier(shape, 3, config).eval()
        info = {"preprocessing": preprocessing, "threshold": 0.5, "raw_input_shape": list(raw.shape[1:])}
        bundle = write_serving_bundle(tmp_path / name / "bundle", classifier, meta, **info)
        cases[name] = {"path": _saved_pyfunc(tmp_path / name, bundle, MODEL_CODE, code), "input": sent}
        with torch.no_grad():
            wanted[name] = ServingModel(classifier, preprocessing, 0.5)(raw)[0].numpy()
    (tmp_path / "cases.json").write_text(json.dumps(cases))

    ran = subprocess.run([sys.executable, "-c", ALONE, str(tmp_path / "cases.json")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    answers = json.loads(ran.stdout.strip().splitlines()[-1])
    for name, answer in answers.items():
        assert all(f.startswith(str(tmp_path / name / "model" / "code")) for f in answer["from"].values()), answer
        assert "trainables.models" in answer["from"]
        assert np.allclose(answer["probabilities"], wanted[name], atol=1e-5), name
    assert set(answers) == set(TINY_MODELS)
