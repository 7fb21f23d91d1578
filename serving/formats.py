"""The export formats and the file (or folder) each writes: the one place that names them.

Torch-free on purpose: ``ovatune --help`` lists the formats without importing torch.
"""

EXPORT_FILES = {
    "torchscript": "model.pt",  # a traced TorchScript module
    "onnx": "model.onnx",  # an ONNX graph with a dynamic batch
    "mlflow": "mlflow_model",  # the registered MLflow pyfunc model, as a folder
}
