"""The registered model's Python class: MLflow's pyfunc around a serving bundle.

``serving/pyfunc_model.py`` is the "model from code" file MLflow stores with each registered
version; it only instantiates ``OvatunePyfunc``. Text models accept text and tokenize it with the
tokenizer their training used.
"""

from __future__ import annotations

import json
import modulefinder
import shutil
import warnings
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import torch

from serving.bundle import BUNDLE_ARTIFACT, BUNDLE_META, OUTPUTS, as_raw_batch, load_serving_bundle

MODEL_CODE = str(Path(__file__).with_name("pyfunc_model.py"))  # the file MLflow stores as the model
CODE_PACKAGES = ("serving", "trainables")  # the project's packages the model's code imports from
_PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the folder (or site-packages) that holds them


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


class _ProjectModules(modulefinder.ModuleFinder):
    """Python's own import scanner, following only imports of ``CODE_PACKAGES`` (never torch's or MLflow's)."""

    def find_module(self, name, path, parent=None):
        if parent is None and name not in (*CODE_PACKAGES, "__init__"):  # (a package's own __init__ too)
            raise ImportError(name)  # noted as not found, and not followed
        return super().find_module(name, path, parent)


def model_code_paths(directory: str | Path) -> list[str]:
    """The code MLflow stores with each registered model (``log_model``'s ``code_paths``): the modules
    of ``CODE_PACKAGES`` that ``MODEL_CODE`` imports, directly or inside a function (a text model's
    tokenizer), copied with their packages' layout into ``directory``.

    Why not the whole packages: they are 60 files (the training loop, the data loaders, ImageNet-C's
    frost images) that every load of a model fetches one by one from the tracking server; these are
    about 17, and the model carries only the code it runs.

    Returns:
        The packages' folders in ``directory``, for ``code_paths``.
    """
    finder = _ProjectModules(path=[str(_PROJECT_ROOT)])
    finder.run_script(MODEL_CODE)
    directory = Path(directory)
    for name, module in finder.modules.items():
        if name.split(".")[0] in CODE_PACKAGES and module.__file__:
            source = Path(module.__file__)
            source = source / "__init__.py" if source.is_dir() else source  # a package: the scanner names its folder
            target = directory / source.relative_to(_PROJECT_ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return [str(directory / package) for package in CODE_PACKAGES]


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
