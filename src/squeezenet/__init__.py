"""SqueezeNet: AlexNet-level accuracy with 50x fewer parameters (Iandola et al., 2016).

    import squeezenet as sq
    model = sq.build("1_0", num_classes=10)
    print(sq.summary("1_0"))
"""

from .compress import CompressConfig, compress  # sq.compress is the function
from .deploy import ExportError, export_onnx, export_openvino
from .errors import DataError, InputSizeError, SpecError, SqueezeNetError, TrainingError, WeightsError
from .model import Fire, SqueezeNet, Summary, build, summary
from .preprocess import PREPROCESSING_PRESETS, Preprocessing, get_preprocessing
from .spec import PRESETS, FireSpec, Metaparameters, Spec, get_spec, register
from .train import TrainConfig, train
from .weights.io import load, read_safetensors, save
from .weights.registry import pretrained

__version__ = "0.1.0"

__all__ = [
    "PREPROCESSING_PRESETS",
    "PRESETS",
    "CompressConfig",
    "DataError",
    "ExportError",
    "Fire",
    "FireSpec",
    "InputSizeError",
    "Metaparameters",
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
    "export_onnx",
    "export_openvino",
    "get_preprocessing",
    "get_spec",
    "load",
    "pretrained",
    "read_safetensors",
    "register",
    "save",
    "summary",
    "train",
]
