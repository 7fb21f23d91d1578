"""Where serving lived before it had a package of its own; kept for one release, for what used it.

A model registered before the move stores ``from trainables.serving import OvatunePyfunc`` as its
code. MLflow only prepends the model's ``code/`` to ``sys.path``, so in a process that has already
imported this project's ``trainables`` that line resolves here, not in the model's own copy; and
scripts written against the README's old ``from trainables.serving import ExportedModel`` keep
working. New code imports ``serving``.
"""

from serving.bundle import (
    BUNDLE_META,
    KEEP_FRACTION,
    MANIFEST_FILE,
    OUTPUTS,
    PREPROCESSING,
    SERVING_FILE,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    ChannelsFirst,
    ImagesFrom0To255,
    ServingModel,
    TokenIds,
    as_raw_batch,
    choose_threshold,
    load_serving_bundle,
    raw_inputs,
    write_serving_bundle,
)
from serving.exported import ExportedModel
from trainables.checksums import TamperedFile

try:  # as before the move: the TorchScript and ONNX names work where MLflow is not installed
    from serving.pyfunc import OvatunePyfunc
except ImportError:  # pragma: no cover
    pass

__all__ = [
    "BUNDLE_META",
    "KEEP_FRACTION",
    "MANIFEST_FILE",
    "OUTPUTS",
    "PREPROCESSING",
    "SERVING_FILE",
    "TOKENIZER_FILE",
    "WEIGHTS_FILE",
    "ChannelsFirst",
    "ExportedModel",
    "ImagesFrom0To255",
    "OvatunePyfunc",
    "ServingModel",
    "TamperedFile",
    "TokenIds",
    "as_raw_batch",
    "choose_threshold",
    "load_serving_bundle",
    "raw_inputs",
    "write_serving_bundle",
]
