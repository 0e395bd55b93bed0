"""torchvision's squeezenet state dicts <-> ours.

torchvision names layers by position (``features.3.squeeze.weight``); we name
them as the paper does (``features.fire2.squeeze.weight``). Our ``features``
and ``classifier`` hold the same layers in the same order as torchvision's,
so the mapping is positional and checked shape by shape.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..errors import WeightsError
from ..model import SqueezeNet


def _position_to_name(model: SqueezeNet) -> dict[str, str]:
    mapping = {}
    for part in ("features", "classifier"):
        for index, name in enumerate(dict(getattr(model, part).named_children())):
            mapping[f"{part}.{index}."] = f"{part}.{name}."
    return mapping


def from_torchvision(state_dict: Mapping[str, torch.Tensor], model: SqueezeNet,
                     source: str = "state dict") -> dict[str, torch.Tensor]:
    """Rename a torchvision squeezenet state dict to ``model``'s names, checking every shape."""
    renames = _position_to_name(model)
    ours = model.state_dict()
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        prefix = ".".join(key.split(".")[:2]) + "."
        if prefix not in renames:
            raise WeightsError(f"{source}: unexpected tensor {key!r} for architecture {model.spec.name!r}")
        target = renames[prefix] + key[len(prefix):]
        if target not in ours:
            raise WeightsError(f"{source}: tensor {key!r} has no place in architecture {model.spec.name!r}")
        if tuple(tensor.shape) != tuple(ours[target].shape):
            raise WeightsError(
                f"{source}: {key!r} has shape {tuple(tensor.shape)} but architecture {model.spec.name!r} "
                f"needs {tuple(ours[target].shape)} (weights for another architecture?)"
            )
        converted[target] = tensor
    missing = sorted(set(ours) - set(converted))
    if missing:
        raise WeightsError(f"{source}: missing tensors for architecture {model.spec.name!r}: {', '.join(missing[:4])}")
    return converted


def to_torchvision(model: SqueezeNet) -> dict[str, torch.Tensor]:
    """Our state dict under torchvision's positional names (loads into torchvision.models.squeezenet1_x)."""
    renames = {ours: position for position, ours in _position_to_name(model).items()}
    converted = {}
    for key, tensor in model.state_dict().items():
        prefix = ".".join(key.split(".")[:2]) + "."
        converted[renames[prefix] + key[len(prefix):]] = tensor
    return converted
