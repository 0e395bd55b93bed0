"""PyTorch ``.pth``/``.pt`` files: a state dict under torchvision's positional names or under ours.

Read with ``weights_only=True`` (no code is unpickled) and checked to be dense
real tensors; a ``{"state_dict": ...}`` checkpoint is unwrapped. Recognised by
the first bytes of a zip archive (torch.save) or of a legacy pickle.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import WeightsError, one_line
from ..model import SqueezeNet
from ..preprocess import TORCHVISION, Preprocessing
from ..spec import Spec
from .fit import build_first_fit, classes_of, fit
from .torchvision import from_torchvision


def recognises(head: bytes) -> bool:
    """A zip archive (torch.save since 1.6) or a pickle's protocol byte (older torch.save)."""
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def read(path: Path, arch: str | Spec | None) -> tuple[SqueezeNet, Preprocessing | None]:
    """The model whose shapes the state dict fits, with torchvision's preprocessing."""
    state = _state_dict(path)
    if any(key.startswith("features.conv1.") for key in state):  # already our names
        classes = classes_of(state.get("classifier.conv10.weight"))
        model = build_first_fit(path, arch, lambda spec: spec, lambda m: fit(state, m, str(path)), classes)
    else:
        classes = classes_of(state.get("classifier.1.weight"))
        model = build_first_fit(path, arch, lambda spec: spec, lambda m: from_torchvision(state, m, str(path)), classes)
    return model, TORCHVISION


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The file's tensors; a zip archive (torch.save since 1.6) is mapped, not read, so a file of other shapes or
    of huge tensors costs nothing before its shapes are refused, and only tensors that fit are ever read."""
    with open(path, "rb") as file:
        mapped = file.read(4) == b"PK\x03\x04"
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=mapped)
    except Exception as error:  # torch raises many types (UnpicklingError, RuntimeError, EOFError...) on bad files
        raise WeightsError(f"{path}: not a readable PyTorch weights file ({one_line(error, 160)})") from None
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                  for k, v in loaded.items()):
        raise WeightsError(f"{path}: holds a {type(loaded).__name__}, not a state dict of named tensors")
    state = dict(loaded)
    for key, tensor in state.items():  # weights_only still admits sparse, meta, complex and quantized tensors
        if tensor.layout != torch.strided or tensor.is_meta or tensor.is_complex() or tensor.is_quantized:
            raise WeightsError(f"{path}: tensor {key!r} is not a dense real tensor ({tensor.layout}, {tensor.dtype}, "
                               f"on {tensor.device})")
    return state
