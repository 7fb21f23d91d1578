"""The export formats and the file (or folder) each writes: the one place that names them.

Torch-free on purpose: ``ovatune --help`` lists the formats without importing torch.
"""

EXPORT_FILES = {
    "torch_export": "model.pt2",  # a torch.export ExportedProgram with a dynamic batch
    "torchscript": "model.pt",  # a traced TorchScript module (PyTorch deprecates TorchScript)
    "onnx": "model.onnx",  # an ONNX graph with a dynamic batch
    "mlflow": "mlflow_model",  # the registered MLflow pyfunc model, as a folder
}
