"""CLINC150 on small files in both published formats, the tokenizer, BERT-Mini, and the whole sweep."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from trainables.data import DatasetNotAvailable, load_dataset
from trainables.data.clinc import MAX_LENGTH, OOS, load_tokenizer
from trainables.losses import LOSSES
from trainables.models import build_classifier

# Made-up intents: each has its own words, so a tiny BERT can learn them; "oos" sits among them.
INTENTS = {
    "book_flight": ["book a flight to {}", "i need a plane ticket to {}", "fly me to {} please"],
    "weather": ["what is the weather in {}", "will it rain in {} today", "how hot is it in {}"],
    OOS: ["what is the meaning of {}", "sing me a song about {}", "who painted {}"],
    "transfer": ["send money to {}", "transfer fifty dollars to {}", "wire cash to {}"],
    "alarm": ["wake me up in {}", "set an alarm for {}", "alarm at {} please"],
}
PLACES = ["paris", "tokyo", "lima", "oslo", "cairo", "quito", "seoul", "rome", "delhi", "perth", "bern", "kyiv"]


def _rows(split: str) -> list[tuple[str, str]]:
    counts = {"train": 8, "val": 2, "test": 3}  # per intent (oos: as many)
    offset = {"train": 0, "val": 8, "test": 10}[split]
    rows = []
    for intent, templates in INTENTS.items():
        for i in range(counts[split]):
            place = PLACES[(offset + i) % len(PLACES)]
            rows.append((templates[i % len(templates)].format(place), intent))
    return rows


def write_clinc_json(root: Path) -> Path:
    """``root/clinc150/data_full.json`` in the original release's format."""
    data = {}
    for split in ("train", "val", "test"):
        rows = _rows(split)
        data[split] = [[t, i] for t, i in rows if i != OOS]
        data[f"oos_{split}"] = [[t, i] for t, i in rows if i == OOS]
    path = root / "clinc150" / "data_full.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def write_clinc_hf(root: Path) -> Path:
    """``root/clinc_oos/plus``: a Hugging Face DatasetDict saved with save_to_disk, as clinc_oos/plus."""
    from datasets import ClassLabel, DatasetDict, Features, Value
    from datasets import Dataset as HFDataset

    names = list(INTENTS)  # "oos" is the third name, not the last: it is looked up by name
    features = Features({"text": Value("string"), "intent": ClassLabel(names=names)})
    splits = {}
    for ours, theirs in (("train", "train"), ("val", "validation"), ("test", "test")):
        rows = _rows(ours)
        splits[theirs] = HFDataset.from_dict(
            {"text": [t for t, _ in rows], "intent": [names.index(i) for _, i in rows]}, features=features
        )
    path = root / "clinc_oos" / "plus"
    DatasetDict(splits).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("writer", [write_clinc_json, write_clinc_hf])
def test_both_formats_load_the_same_and_no_out_of_scope_query_reaches_training(tmp_path, writer):
    writer(tmp_path)
    data = load_dataset("clinc", str(tmp_path))
    assert data.class_names == ["book_flight", "weather", "transfer", "alarm"]
    assert len(data.train) == 4 * 8 and len(data.val) == 4 * 2 and len(data.test) == 4 * 3
    assert sorted(set(data.train.y.tolist())) == [0, 1, 2, 3]
    assert data.train.x.shape == (32, MAX_LENGTH) and data.train.x.dtype == torch.long
    assert data.ood["out_of_scope"].shape == (3, MAX_LENGTH) and data.extras["val_ood"].shape == (2, MAX_LENGTH)
    tokenizer = load_tokenizer(data.tokenizer)
    decoded = [tokenizer.decode(ids.tolist()) for ids in data.train.x]
    oos_sentences = {t.lower() for t, i in _rows("train") if i == OOS}
    assert not oos_sentences & set(decoded)  # nothing out of scope was trained on
    assert "book a flight to paris" in decoded
    assert data.model_settings["vocab_size"] == tokenizer.get_vocab_size()


def test_tokenizer_round_trip_lower_cases_truncates_and_pads(tmp_path):
    write_clinc_json(tmp_path)
    data = load_dataset("clinc", str(tmp_path))
    tokenizer = load_tokenizer(data.tokenizer)  # the JSON that checkpoints carry
    ids = tokenizer.encode("Book a FLIGHT to Paris").ids
    assert len(ids) == MAX_LENGTH and ids[0] == tokenizer.token_to_id("[CLS]") and ids[-1] == 0
    assert tokenizer.decode(ids) == "book a flight to paris"
    long = tokenizer.encode(" ".join(["weather"] * 100)).ids
    assert len(long) == MAX_LENGTH and long[-1] == tokenizer.token_to_id("[SEP]")
    assert tokenizer.token_to_id("[PAD]") == 0


def test_missing_clinc_says_where_it_looked(tmp_path):
    with pytest.raises(DatasetNotAvailable, match=f"looked for {tmp_path}/clinc_oos/plus.*--download"):
        load_dataset("clinc", str(tmp_path))


def test_bert_mini_full_size_and_a_tiny_one():
    config = {"model": "bert_mini", "loss": "ova_dm", "vocab_size": 8192, "max_length": 32, "pad_id": 0}
    full = build_classifier((32,), 150, config)
    body = sum(p.numel() for p in full.body.parameters())
    # BERT-Mini: 8192·256 token + 32·256 position + 2·256 type embeddings, 4 layers, pooler
    layer = 4 * (256 * 256 + 256) + 2 * 256 + (256 * 1024 + 1024) + (1024 * 256 + 256) + 2 * 256
    assert body == (8192 + 32 + 2) * 256 + 2 * 256 + 4 * layer + 256 * 256 + 256
    tiny = build_classifier((32,), 5, {**config, "width": 16, "depth": 1, "heads": 2, "intermediate": 32})
    ids = torch.randint(1, 8192, (3, 32))
    ids[:, 20:] = 0  # padding
    assert tiny(ids).shape == (3, 5)
    # the padding is masked: changing what sits after it changes nothing
    assert torch.allclose(tiny.eval()(ids), tiny(torch.cat([ids[:, :20], torch.zeros(3, 12, dtype=torch.long)], 1)))


@pytest.mark.slow
def test_clinc_sweep_promote_evaluate_export(tmp_path, home, in_process):
    """Every loss's whole path on the HF-format fixture with a tiny BERT: sweep, champion, evaluation
    with the out-of-scope queries as OOD, an export that ships the tokenizer."""

    import mlflow
    from mlflow.tracking import MlflowClient

    from serving import ExportedModel

    write_clinc_hf(tmp_path / "data")

    # fmt: off
    out = in_process("run", "clinc", "--data-dir", str(tmp_path / "data"), "--trials", "1",
                     "--epochs", "3", "--set", "width=16", "--set", "depth=1", "--set", "heads=2", "--set", "intermediate=32",
                     "--set", "batch_size=16", "--cpus-per-trial", "1", "--home", str(home), check=True).stdout
    # fmt: on
    assert "champions on the test split" in out
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("clinc")
    (evaluation,) = client.search_runs([experiment.experiment_id], "tags.`ovatune.kind` = 'evaluation'")
    for loss in LOSSES:
        assert 0 <= evaluation.data.metrics[f"{loss}/test_accuracy"] <= 1
        assert 0 <= evaluation.data.metrics[f"{loss}/ood_out_of_scope_auroc"] <= 1
    report = (home / "reports" / "clinc" / "report.md").read_text()
    assert "D_ood = out_of_scope: AUROC / AUPRC" in report and "accuracy_vs_confidence" in report

    in_process(
        "export", "clinc", "--losses", "ova_dm", "--out", str(tmp_path / "exports"), "--home", str(home), check=True
    )
    folder = tmp_path / "exports" / "ova_dm" / "torch_export"  # the default format
    tokenizer = load_tokenizer((folder / "tokenizer.json").read_text())
    ids = np.array([tokenizer.encode("will it rain in paris today").ids], dtype=np.float32)
    got = ExportedModel(folder)(ids)
    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    registered = mlflow.pyfunc.load_model("models:/ovatune-clinc-ova_dm@champion")
    # the registered model takes text and tokenizes it itself; the export takes the ids
    want = registered.predict(pd.DataFrame({"text": ["Will it rain in Paris today"]}))
    assert np.abs(got["probabilities"] - want["probabilities"]).max() <= 1e-5
    assert got["prediction"][0] == want["prediction"][0]
    # where MLflow builds the model's environment (`mlflow models serve`), BERT and its tokenizer come too
    requirements = Path(mlflow.pyfunc.get_model_dependencies("models:/ovatune-clinc-ova_dm@champion")).read_text()
    assert {"transformers", "tokenizers", "torch", "mlflow"} <= {r.split("==")[0] for r in requirements.split()}


@pytest.mark.parametrize("fmt", ["onnx", "torch_export"])
def test_a_bert_serving_model_exports_with_a_dynamic_batch(fmt, tmp_path):
    """What `ovatune export clinc` runs (torch_export, the default, and onnx): token ids in, the four
    outputs out, any batch size."""
    from serving import OUTPUTS, ServingModel
    from serving.formats import EXPORT_FILES
    from tuning.export import write_onnx, write_torch_export

    config = {"model": "bert_mini", "loss": "ova_dm", "vocab_size": 500, "max_length": 32, "pad_id": 0,
              "width": 16, "depth": 1, "heads": 2, "intermediate": 32}  # fmt: skip
    torch.manual_seed(0)
    model = ServingModel(build_classifier((32,), 5, config), "token_ids", 0.5).eval()
    ids = torch.randint(1, 500, (3, 32)).float()
    ids[:, 10:] = 0
    write = {"onnx": write_onnx, "torch_export": write_torch_export}[fmt]
    write(model, torch.zeros(2, 32), tmp_path, tmp_path)  # exported at batch 2, run at batch 3
    path = str(tmp_path / EXPORT_FILES[fmt])
    with torch.no_grad():
        if fmt == "onnx":
            import onnxruntime

            session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
            got = dict(zip(OUTPUTS, session.run(list(OUTPUTS), {"raw_inputs": ids.numpy()})))
        else:
            got = dict(zip(OUTPUTS, (o.numpy() for o in torch.export.load(path).module()(ids))))
        want = dict(zip(OUTPUTS, (o.numpy() for o in model(ids))))
    assert got["probabilities"].shape == (3, 5)
    assert np.abs(got["probabilities"] - want["probabilities"]).max() <= 1e-5
    assert (got["prediction"] == want["prediction"]).all()
