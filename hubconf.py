"""torch.hub entry points, as for torchvision's models.

    model = torch.hub.load("path/to/this/repo", "squeezenet1_1", source="local", weights="squeezenet_v1.1.caffemodel")
    model = torch.hub.load("path/to/this/repo", "squeezenet1_0", source="local", weights="1_0-deep-compression")

``weights`` is a local file in any supported format or a pretrained name
(squeezenet.weights.registry); without it the network is freshly
initialised (keyword arguments such as num_classes override the spec).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

dependencies = ["torch", "torchvision", "numpy", "PIL", "safetensors"]

_SOURCE = Path(__file__).resolve().parent / "src"
if _SOURCE.is_dir() and str(_SOURCE) not in sys.path:  # a checkout, not an installed package
    sys.path.insert(0, str(_SOURCE))

from squeezenet import SqueezeNet, WeightsError, build, load  # noqa: E402
from squeezenet.weights.registry import resolve  # noqa: E402


def _model(arch: str, weights: str | Path | None, overrides: dict[str, Any]) -> SqueezeNet:
    if weights is None:
        return build(arch, **overrides)
    if overrides:
        raise WeightsError(f"{weights}: spec overrides ({', '.join(overrides)}) cannot be combined with weights")
    return load(resolve(weights), arch=arch)


def squeezenet1_0(weights: str | Path | None = None, **overrides: Any) -> SqueezeNet:
    """SqueezeNet v1.0 (the paper's Table 1); ``weights``: a file or a pretrained name such as "1_0-caffe"."""
    return _model("1_0", weights, overrides)


def squeezenet1_1(weights: str | Path | None = None, **overrides: Any) -> SqueezeNet:
    """SqueezeNet v1.1 (2.4x fewer MACs, same accuracy); ``weights``: a file or a name such as "1_1-caffe"."""
    return _model("1_1", weights, overrides)
