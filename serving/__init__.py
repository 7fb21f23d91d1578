"""Serving: what a champion is outside ovatune, and the only code a deployed model runs.

- ``serving.bundle``: ``ServingModel`` (raw inputs → probabilities, confidence, prediction,
  none_of_the_above), the bundle's files and their hashes, the confidence threshold rule.
- ``serving.pyfunc``: the registered MLflow model's class; ``serving/pyfunc_model.py`` is the
  "model from code" file that MLflow stores with each version (it travels with ``serving/`` and
  ``trainables/`` as the model's code).
- ``serving.exported``: ``ExportedModel``, an ``ovatune export`` folder checked and loaded.
- ``serving.formats``: the export formats and the file each writes (torch-free, for ``--help``).

Layer rule (import-linter, in ``make test``): serving imports the model code of ``trainables``
and MLflow, never Ray, Optuna or the driver (``tuning``); nothing in ``trainables`` imports it.
"""

# Imported on first use, not here: ``serving.formats`` is read by ``ovatune --help``, which must
# not pay for torch (importing a submodule runs this file first).
_EXPORTS = {"OUTPUTS": "serving.bundle", "ServingModel": "serving.bundle", "raw_inputs": "serving.bundle",
            "ExportedModel": "serving.exported"}  # fmt: skip
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'serving' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
