"""SqueezeNet: AlexNet-level accuracy with 50x fewer parameters (Iandola et al., 2016).

    import squeezenet as sq
    model = sq.build("1_0", num_classes=10)
    print(sq.summary("1_0"))
"""

from .errors import DataError, InputSizeError, SpecError, SqueezeNetError, TrainingError, WeightsError
from .model import Fire, SqueezeNet, Summary, build, summary
from .spec import PRESETS, FireSpec, Metaparameters, Spec, get_spec, register

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "DataError",
    "Fire",
    "FireSpec",
    "InputSizeError",
    "Metaparameters",
    "Spec",
    "SpecError",
    "SqueezeNet",
    "SqueezeNetError",
    "Summary",
    "TrainingError",
    "WeightsError",
    "build",
    "get_spec",
    "register",
    "summary",
]
