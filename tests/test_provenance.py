"""A run's data provenance (``trainables.data.provenance``) and how the driver records it as MLflow
dataset inputs (``tuning.tracking.log_provenance``), on a real SQLite store."""

import json

from mlflow.tracking import MlflowClient

from trainables.data import load_dataset
from trainables.data.imagenet import ImageFiles
from trainables.data.provenance import Provenance, content_digest, ood_provenance, split_provenance
from trainables.train import training_provenance
from tuning.tracking import log_provenance


def test_digests_name_the_exact_examples_of_each_split_and_seed():
    data, again, other_seed = load_dataset("digits"), load_dataset("digits"), load_dataset("digits", seed=1)
    digests = {split: split_provenance(data, split).digest for split in ("train", "validation", "test")}
    assert len(set(digests.values())) == 3 and all(len(d) == 16 for d in digests.values())
    assert {s: split_provenance(again, s).digest for s in digests} == digests  # the same data: the same digest
    assert split_provenance(other_seed, "train").digest != digests["train"]  # another split seed: other examples
    changed = data.train.x.clone()
    changed[7, 0, 3, 4] += 1e-6  # one input of one example
    assert content_digest(changed, data.train.y) != digests["train"]
    relabelled = data.train.y.clone()
    relabelled[0] = (relabelled[0] + 1) % 10
    assert content_digest(data.train.x, relabelled) != digests["train"]

    test = split_provenance(data, "test")
    assert (test.dataset, test.name, test.num_examples, test.shape, test.dtype, test.data_seed) == (
        "digits", "digits", 360, (1, 8, 8), "float32", 0
    )  # fmt: skip
    assert test.source == "trainables.data.digits.load_digits" and other_seed.data_seed == 1
    ood = ood_provenance(data, "photo_patches")
    assert (ood.split, ood.name, ood.num_examples) == ("ood", "photo_patches", len(data.ood["photo_patches"]))
    assert Provenance.from_dict(json.loads(json.dumps(test.to_dict()))) == test


def test_image_files_are_identified_by_their_paths_and_labels(tmp_path):
    files = ImageFiles([(str(tmp_path / f"{i}.JPEG"), i % 3) for i in range(6)], transform=lambda image: image)
    same = ImageFiles(list(files.samples), transform=lambda image: image)
    relabelled = ImageFiles([(path, 0) for path, _ in files.samples], transform=lambda image: image)
    assert content_digest(files) == content_digest(same) != content_digest(relabelled)


def test_a_trial_reports_its_training_and_validation_splits():
    config = {"dataset": "digits", "data_seed": 0}
    records = [Provenance.from_dict(r) for r in json.loads(training_provenance(config))]
    assert [(r.split, r.num_examples) for r in records] == [("train", 1293), ("validation", 144)]
    data = load_dataset("digits")
    assert records[0].digest == content_digest(data.train.x, data.train.y)


def test_the_store_gets_one_dataset_input_per_split_however_often_it_is_logged(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("digits")
    data = load_dataset("digits")
    records = [split_provenance(data, "train"), split_provenance(data, "validation")]
    first, second = (client.create_run(experiment).info.run_id for _ in range(2))
    log_provenance(client, first, records)
    log_provenance(client, first, records)  # a resumed trial reports its data again
    log_provenance(client, second, records)
    for run_id in (first, second):
        inputs = client.get_run(run_id).inputs.dataset_inputs
        assert sorted((i.dataset.name, i.dataset.digest, i.tags[0].value) for i in inputs) == sorted(
            ("digits", r.digest, r.split) for r in records
        )
        train = next(i.dataset for i in inputs if i.tags[0].value == "train")
        assert json.loads(train.profile) == {
            "num_examples": 1293,
            "split": "train",
            "data_seed": 0,
            "source": records[0].source,
        }
        spec = json.loads(json.loads(train.schema)["mlflow_tensorspec"]["features"])
        assert spec[0]["tensor-spec"] == {"dtype": "float32", "shape": [-1, 1, 8, 8]}
