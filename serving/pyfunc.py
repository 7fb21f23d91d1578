"""The registered model's Python class: MLflow's pyfunc around a serving bundle.

``serving/pyfunc_model.py`` is the "model from code" file MLflow stores with each registered
version; it only instantiates ``OvatunePyfunc``. Text models accept text and tokenize it with the
tokenizer their training used.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import torch

import trainables
from serving.bundle import BUNDLE_ARTIFACT, BUNDLE_META, OUTPUTS, as_raw_batch, load_serving_bundle

MODEL_CODE = str(Path(__file__).with_name("pyfunc_model.py"))  # the file MLflow stores as the model
# The packages it imports, whole: MLflow puts a model's code first on sys.path and leaves it there, so
# in a process that loads a model before it imports these, they are the model's copies from then on
# (and in the processes it spawns: `ovatune corrupt`'s pool found no trainables.data.corrupted_sets in
# a copy of only the modules the model imports, 17 of them).
CODE_PATHS = [str(Path(__file__).parent), str(Path(trainables.__file__).parent)]


# What an architecture's model code imports beyond torch, numpy and MLflow (trainables.models), and a
# text model's tokenizer (tokenizers): without them in its pip requirements, the model fails to load
# where MLflow builds its environment (`mlflow models serve` without --env-manager local).
ARCHITECTURE_PACKAGES = {"resnet50": ("torchvision",), "bert_mini": ("transformers", "tokenizers")}


def model_requirements(architecture: str) -> list[str]:
    """The registered model's pip requirements: torch, numpy, MLflow and what ``architecture`` (a
    key of ``trainables.models.MODELS``) imports, each pinned to the version installed here."""
    from importlib.metadata import version

    packages = ("torch", "numpy", "mlflow", *ARCHITECTURE_PACKAGES.get(architecture, ()))
    return [f"{package}=={version(package).split('+')[0]}" for package in packages]


def _texts(model_input: Any) -> list[str] | None:
    """The strings in a list, array, Series or one-column DataFrame of text, else None (numbers)."""
    if hasattr(model_input, "to_numpy"):
        model_input = model_input.to_numpy()
    values = np.asarray(model_input, dtype=object).ravel()
    if len(values) and all(isinstance(v, str) for v in values):
        return [str(v) for v in values]
    return None


# No type hints on predict's inputs: MLflow would then validate by them instead of the logged
# signature (the signature is the check here). MLflow suggests adding some, as a UserWarning on every
# import of this class that no filter can silence (it resets the filters around it), so the warning
# is recorded here and dropped: it would be the first line of every command's output.
with warnings.catch_warnings(record=True):

    class OvatunePyfunc(mlflow.pyfunc.PythonModel):
        """The registered model: loads the bundle (checked, weights only) and predicts the four outputs."""

        def load_context(self, context) -> None:
            self.model, self.info = load_serving_bundle(context.artifacts[BUNDLE_ARTIFACT])  # checks the hashes
            meta = json.loads((Path(context.artifacts[BUNDLE_ARTIFACT]) / BUNDLE_META).read_text())
            self.tokenizer = None
            if meta.get("tokenizer"):
                from trainables.data.clinc import load_tokenizer

                self.tokenizer = load_tokenizer(meta["tokenizer"])

        def predict(self, context, model_input, params=None) -> dict[str, np.ndarray]:
            texts = _texts(model_input) if self.tokenizer is not None else None
            if texts is not None:  # a text model sent text: tokenize it as in training
                from trainables.data.clinc import encode

                model_input = encode(self.tokenizer, texts).numpy()
            x = as_raw_batch(model_input, self.info["raw_input_shape"])
            with torch.no_grad():
                outputs = self.model(x)
            return {name: value.numpy() for name, value in zip(OUTPUTS, outputs)}
