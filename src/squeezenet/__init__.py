"""SqueezeNet: AlexNet-level accuracy with 50x fewer parameters (Iandola et al., 2016).

    import squeezenet as sq
    model = sq.build("1_0", num_classes=10)
    print(sq.summary("1_0"))

Specs, errors and the training config are plain Python and load at once; names that need torch (models,
weights, export) load it on first use, so ``import squeezenet`` and ``squeezenet --help`` start fast.
"""

from .compress import compress
from .errors import (
    CompressionError,
    DataError,
    ExportError,
    InputSizeError,
    MissingExtraError,
    SpecError,
    SqueezeNetError,
    TrainingError,
    WeightsError,
)
from .lazy import lazy_attributes
from .spec import PRESETS, FireSpec, Metaparameters, Spec, get_spec, register
from .train import TrainConfig, train

__version__ = "0.1.0"

__getattr__ = lazy_attributes(__name__, {
    "CompressConfig": ".compress.config",
    "export": ".deploy", "export_onnx": ".deploy", "export_openvino": ".deploy",
    "Accuracy": ".evaluate", "predict": ".evaluate",  # evaluate() is squeezenet.evaluate.evaluate: a module too
    "Fire": ".model", "ModelMeta": ".model", "SqueezeNet": ".model", "Summary": ".model", "summary": ".model",
    "build": ".zoo", "list_models": ".zoo", "list_pretrained": ".zoo",  # build: fresh, or pretrained + new head
    "PREPROCESSING_PRESETS": ".preprocess", "Preprocessing": ".preprocess", "get_preprocessing": ".preprocess",
    "load": ".weights.io", "read_safetensors": ".weights.io", "save": ".weights.io", "save_pretrained": ".weights.io",
    "pretrained": ".weights.registry",
})

__all__ = [
    "PREPROCESSING_PRESETS",
    "PRESETS",
    "Accuracy",
    "CompressConfig",
    "CompressionError",
    "DataError",
    "ExportError",
    "Fire",
    "FireSpec",
    "InputSizeError",
    "Metaparameters",
    "MissingExtraError",
    "ModelMeta",
    "Preprocessing",
    "Spec",
    "SpecError",
    "SqueezeNet",
    "SqueezeNetError",
    "Summary",
    "TrainConfig",
    "TrainingError",
    "WeightsError",
    "build",
    "compress",
    "export",
    "export_onnx",
    "export_openvino",
    "get_preprocessing",
    "get_spec",
    "list_models",
    "list_pretrained",
    "load",
    "predict",
    "pretrained",
    "read_safetensors",
    "register",
    "save",
    "save_pretrained",
    "summary",
    "train",
]
