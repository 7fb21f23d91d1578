"""``tuning.export`` on a real MLflow store with a tiny registered champion: every format answers as
the serving model does, the manifest guards every file, a failed export leaves the previous one.

The champion is registered the way promotion registers one (a pyfunc from ``serving/pyfunc_model.py``
around a serving bundle), without a sweep: these run in seconds; ``test_serving.py`` exports the
champions of a real sweep end to end.
"""

import json
import warnings

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from search_spaces import get_space
from serving import ExportedModel, ServingModel
from serving.bundle import MANIFEST_FILE, SERVING_FILE, WEIGHTS_FILE, write_serving_bundle
from serving.pyfunc import CODE_PATHS, MODEL_CODE
from trainables.checksums import TamperedFile
from trainables.models import build_classifier
from tuning.champion import CARD_FILE, CHAMPION, NoChampion, registered_name
from tuning.export import ExportFailed, champion_losses, export_champion
from tuning.options import FORMATS

SPACE = get_space("digits")
LOSS = "ova_dm"
RAW_SHAPE = [2, 2, 1]  # (H, W, C) raw images 0–255
INFO = {
    "experiment": "digits", "dataset": "digits", "loss": LOSS, "class_names": ["a", "b", "c"],
    "preprocessing": "images_0_255_nhwc", "raw_input_shape": RAW_SHAPE, "threshold": 0.4,
    "threshold_rule": "by hand", "validation_kept": 0.95, "sweep": "tiny", "trial_number": 0,
}  # fmt: skip


@pytest.fixture
def champion(tmp_path):
    """A real MLflow store holding one registered version of ``ovatune-digits-ova_dm`` with the
    champion alias; returns (client, the classifier it wraps)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    experiment = client.create_experiment("digits", artifact_location=str(tmp_path / "artifacts"))
    torch.manual_seed(0)
    config = {"model": "mlp", "hidden": [4], "loss": LOSS}
    classifier = build_classifier((1, 2, 2), 3, config).eval()
    meta = {"config": config, "input_shape": [1, 2, 2], "class_names": INFO["class_names"]}
    bundle = write_serving_bundle(tmp_path / "bundle", classifier, meta, **INFO)
    name = registered_name("digits", LOSS)
    with mlflow.start_run(experiment_id=experiment) as run, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's notes on type hints and environments
        mlflow.log_param("lr", "0.01")
        mlflow.pyfunc.log_model(name="model", python_model=MODEL_CODE, code_paths=CODE_PATHS,
                                artifacts={"bundle": str(bundle)}, registered_model_name=name,
                                pip_requirements=["torch"])  # fmt: skip
    client.set_registered_model_alias(name, CHAMPION, "1")
    assert client.get_model_version(name, "1").run_id == run.info.run_id
    yield client, classifier
    mlflow.set_tracking_uri(None)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_format_answers_as_the_serving_model(champion, tmp_path, fmt):
    client, classifier = champion
    folder = export_champion(SPACE, LOSS, fmt, tmp_path / "exports", client)
    assert folder == tmp_path / "exports" / LOSS / fmt
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    files = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} - {MANIFEST_FILE}
    assert set(manifest) == files and {SERVING_FILE, CARD_FILE} <= files
    assert json.loads((folder / SERVING_FILE).read_text())["format"] == fmt
    card = (folder / CARD_FILE).read_text()
    assert card.startswith(f"# Model card: {registered_name('digits', LOSS)} v1") and "`lr` = 0.01" in card

    x = torch.rand(5, *RAW_SHAPE) * 255  # (B, H, W, C)
    got = ExportedModel(folder)(x.numpy())
    want = [o.detach().numpy() for o in ServingModel(classifier, INFO["preprocessing"], INFO["threshold"])(x)]
    assert np.allclose(got["probabilities"], want[0], atol=1e-5)
    assert np.array_equal(got["prediction"], want[2]) and np.array_equal(got["none_of_the_above"], want[3])


def test_a_changed_file_of_an_export_is_refused(champion, tmp_path):
    client, _ = champion
    folder = export_champion(SPACE, LOSS, "torchscript", tmp_path / "exports", client)
    (folder / CARD_FILE).write_text("edited\n")
    with pytest.raises(TamperedFile, match=CARD_FILE):
        ExportedModel(folder)


def test_a_failed_export_names_the_model_and_leaves_the_previous_one(champion, tmp_path):
    client, _ = champion
    folder = export_champion(SPACE, LOSS, "torchscript", tmp_path / "exports", client)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    # The registered bundle's weights changed after registration: its hash no longer matches.
    version = client.get_model_version(registered_name("digits", LOSS), "1")
    weights = next((tmp_path / "artifacts").rglob(f"bundle/{WEIGHTS_FILE}"))
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ExportFailed, match=rf"{LOSS}: exporting .* v1 \(from {version.source}\) failed: TamperedFile"):
        export_champion(SPACE, LOSS, "torchscript", tmp_path / "exports", client)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in folder.parent.iterdir()] == ["torchscript"]  # no staging folder left behind


def test_only_losses_with_a_champion_are_exported(champion, tmp_path):
    client, _ = champion
    assert champion_losses(SPACE, client) == [LOSS]
    with pytest.raises(NoChampion, match="ovatune-digits-softmax has no version with alias 'champion'"):
        export_champion(SPACE, "softmax", "torchscript", tmp_path / "exports", client)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ExportFailed, match="is a file, not a folder"):
        export_champion(SPACE, LOSS, "torchscript", tmp_path / "a_file", client)
