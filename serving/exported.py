"""An ``ovatune export`` folder as a callable: every file checked against the manifest, then run.

An ExportedProgram runs with ``torch.export.load``, TorchScript with ``torch.jit.load``, ONNX with
onnxruntime, the MLflow format with ``mlflow.pyfunc``; all four return the four outputs of
``serving.bundle.ServingModel``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from serving.bundle import MANIFEST_FILE, OUTPUTS, SERVING_FILE, as_raw_batch
from serving.formats import EXPORT_FILES
from trainables.checksums import TamperedFile, check_files


class ExportedModel:
    """An ``ovatune export`` folder, loaded after checking every file against ``manifest.json``.

    Call it with raw inputs (B, *raw shape) — or one flattened row per example — to get the four
    outputs as numpy arrays (see the module doc for what runs each format).

    Raises:
        TamperedFile: a file was changed, added to the manifest's list or removed since the export.
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        manifest_path = self.directory / MANIFEST_FILE
        if not manifest_path.is_file():
            raise TamperedFile(f"{manifest_path} is missing: {self.directory} is not an ovatune export")
        check_files(self.directory, json.loads(manifest_path.read_text()))
        self.info = json.loads((self.directory / SERVING_FILE).read_text())
        self.format = self.info["format"]
        if self.format == "torch_export":
            self._model = torch.export.load(str(self.directory / EXPORT_FILES["torch_export"])).module()
        elif self.format == "torchscript":
            with warnings.catch_warnings():  # torch.jit.load's FutureWarning: --help already says it is deprecated
                warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated", category=FutureWarning)
                path = str(self.directory / EXPORT_FILES["torchscript"])
                self._model = torch.jit.load(path, map_location="cpu").eval()
        elif self.format == "onnx":
            import onnxruntime

            self._model = onnxruntime.InferenceSession(
                str(self.directory / EXPORT_FILES["onnx"]), providers=["CPUExecutionProvider"]
            )
        elif self.format == "mlflow":
            import mlflow.pyfunc

            self._model = mlflow.pyfunc.load_model(str(self.directory / EXPORT_FILES["mlflow"]))
        else:
            raise ValueError(f"unknown export format {self.format!r}")

    def __call__(self, raw: Any) -> dict[str, np.ndarray]:
        x = as_raw_batch(raw, self.info["raw_input_shape"])
        if self.format in ("torch_export", "torchscript"):
            with torch.no_grad():
                return {name: value.numpy() for name, value in zip(OUTPUTS, self._model(x))}
        if self.format == "onnx":
            return dict(zip(OUTPUTS, self._model.run(list(OUTPUTS), {"raw_inputs": x.numpy()})))
        return self._model.predict(x.reshape(len(x), -1).numpy())
