"""Fast CPU inference and on-device files: exports, int8 quantization, and runtime backends.

- ``export``: writing .onnx, .xml and (through ``executorch``, ``litert``, ``ncnn``) .pte, .tflite and ncnn
  files, float32 or int8, each run in its runtime and checked against PyTorch; ``graph``: the network as a
  device runs it (batch norm folded, explicit pool padding) and the JSON file beside a device file;
- ``backends``: the ``Classifier`` protocol that predict and evaluate take, and the runtimes
  (PyTorch, ONNX Runtime, OpenVINO, torchvision's class) as ``Backend`` objects that satisfy it;
- ``inference``: a weights file or an exported graph on a named backend (``--backend``).

Importing this package imports no exporter or runtime: onnx, onnxruntime,
openvino and nncf (pip extras) load inside the functions that use them.
"""

from ..errors import ExportError
from .backends import (
    BACKENDS,
    OPENVINO_F32,
    Backend,
    Classifier,
    available,
    fastest_backend,
    onnxruntime_backend,
    openvino_backend,
    read_metadata,
    torch_backend,
    torchvision_backend,
)
from .export import (
    DEVICE_FORMATS,
    FORMATS,
    ONNX_OPSET,
    Int8Check,
    cached_onnx,
    calibration_inputs,
    check_int8,
    check_outputs,
    example_batch,
    export,
    export_device,
    export_onnx,
    export_openvino,
    preprocessed,
    quantize_onnx,
    quantize_openvino,
    torch_logits,
)
from .inference import BACKEND_CHOICES, inference_model, make_backend, open_exported

__all__ = [
    "BACKENDS",
    "BACKEND_CHOICES",
    "DEVICE_FORMATS",
    "FORMATS",
    "ONNX_OPSET",
    "OPENVINO_F32",
    "Backend",
    "Classifier",
    "ExportError",
    "Int8Check",
    "available",
    "cached_onnx",
    "calibration_inputs",
    "check_int8",
    "check_outputs",
    "example_batch",
    "export",
    "export_device",
    "export_onnx",
    "export_openvino",
    "fastest_backend",
    "inference_model",
    "make_backend",
    "onnxruntime_backend",
    "open_exported",
    "openvino_backend",
    "preprocessed",
    "quantize_onnx",
    "quantize_openvino",
    "read_metadata",
    "torch_backend",
    "torch_logits",
    "torchvision_backend",
]
