"""The registered model's code (MLflow "models from code": no pickled object is stored or loaded)."""

import mlflow

from serving.pyfunc import OvatunePyfunc

mlflow.models.set_model(OvatunePyfunc())
