"""``serving.bundle`` by hand: threshold rule, outputs, input formats, the bundle and its file hashes."""

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
)
from trainables.checksums import TamperedFile, check_files, sha256


def test_threshold_keeps_95_percent_by_hand():
    confidence = np.arange(1, 101) / 100.0  # 0.01 … 1.00
    t = choose_threshold(confidence)
    assert t == pytest.approx(0.06)  # ≥ 0.06 keeps 95 of 100; ≥ 0.07 would keep 94
    assert (confidence >= t).mean() == 0.95
    assert choose_threshold(np.array([0.9, 0.5, 0.7])) == 0.5  # 3 examples: 95% means all three


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
