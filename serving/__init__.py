"""Serving: what a champion is outside ovatune, and the only code a deployed model runs.

- ``serving.bundle``: ``ServingModel`` (raw inputs → probabilities, confidence, prediction,
  none_of_the_above), the bundle's files and their hashes, the confidence threshold rule.
- ``serving.pyfunc``: the registered MLflow model's class; ``serving/pyfunc_model.py`` is the
  "model from code" file that MLflow stores with each version (it travels with ``serving/`` and
  ``trainables/`` as the model's code).
- ``serving.exported``: ``ExportedModel``, an ``ovatune export`` folder checked and loaded.

Layer rule (import-linter, in ``make test``): serving imports the model code of ``trainables``
and MLflow, never Ray, Optuna or the driver (``tuning``); nothing in ``trainables`` imports it.
"""

from serving.bundle import OUTPUTS, ServingModel, raw_inputs
from serving.exported import ExportedModel

__all__ = ["OUTPUTS", "ExportedModel", "ServingModel", "raw_inputs"]
