"""What every on-device export starts from: the network as a device runs it, and the facts an app needs beside it.

``deployable`` makes an eval-mode copy that computes the same logits with fewer kinds of layer: batch norm folded
into the convolution before it, and (for runtimes whose max-pool has no round-up mode, such as LiteRT's) each
round-up pool given the explicit -inf padding that makes a plain pool produce the same map. ``write_sidecar`` and
``read_sidecar`` keep the spec, the preprocessing, the class names and the input layout in a JSON file beside a
model file whose format has no place of its own for them (.pte, .tflite, ncnn's .param).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import SqueezeNetError, WeightsError
from ..model import ModelMeta
from ..preprocess import Preprocessing
from ..spec import Spec

SIDECAR_VERSION = 1


def deployable(model: nn.Module, size: int, explicit_pool_padding: bool = False) -> nn.Module:
    """An eval-mode copy of ``model`` for a ``size`` x ``size`` input: batch norm folded into its convolutions
    and, with ``explicit_pool_padding``, every round-up (ceil_mode) max-pool replaced by -inf padding on the
    bottom and right plus a plain pool, which give the same output map at this size."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    runner = copy.deepcopy(model).eval()
    for module in list(runner.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Sequential) and len(child) == 2 and isinstance(child[0], nn.Conv2d) \
                    and isinstance(child[1], nn.BatchNorm2d):
                setattr(module, name, fuse_conv_bn_eval(child[0], child[1]))
    if explicit_pool_padding:
        _pad_round_up_pools(runner, size)
    return runner


def _pad_round_up_pools(model: nn.Module, size: int) -> None:
    """Replace each ceil_mode MaxPool2d by ConstantPad2d(-inf) + MaxPool2d, measuring each pool's input side by
    running the network once (any spec: the pools may sit anywhere)."""
    sides: dict[nn.Module, int] = {}

    def remember(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        sides[module] = inputs[0].shape[-1]

    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d) and m.ceil_mode]
    hooks = [pool.register_forward_pre_hook(remember) for pool in pools]
    channels = getattr(getattr(model, "spec", None), "in_channels", 3)
    with torch.inference_mode():
        model(torch.zeros(1, channels, size, size))
    for hook in hooks:
        hook.remove()
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if child in sides:
                setattr(module, name, _explicit_pool(child, sides[child]))


def _explicit_pool(pool: nn.MaxPool2d, side: int) -> nn.Module:
    kernel, stride = _pair(pool.kernel_size)[0], _pair(pool.stride or pool.kernel_size)[0]
    padding = _pair(pool.padding)[0]
    rounded_up = math.ceil((side + 2 * padding - kernel) / stride) + 1
    if (rounded_up - 1) * stride >= side + padding:  # PyTorch drops a last window that would start in the padding
        rounded_up -= 1
    extra = max(0, (rounded_up - 1) * stride + kernel - (side + 2 * padding))
    plain = nn.MaxPool2d(kernel, stride, padding, ceil_mode=False)
    if extra == 0:
        return plain
    return nn.Sequential(nn.ConstantPad2d((0, extra, 0, extra), float("-inf")), plain)


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


# -- the JSON file beside a model file ----------------------------------------------------------------------------


def sidecar_path(path: str | Path) -> Path:
    """model.pte -> model.json (ncnn: model.param and model.bin -> model.json)."""
    return Path(path).with_suffix(".json")


def sidecar(model: nn.Module, size: int, file_format: str, precision: str, layout: str = "NCHW",
            **details: Any) -> dict[str, Any]:
    """What a device app needs to feed the file and read its output, as plain JSON values."""
    meta = getattr(model, "meta", None)
    preprocessing = meta.preprocessing if isinstance(meta, ModelMeta) else None
    if preprocessing is not None and preprocessing.crop is not None and preprocessing.crop != size:
        preprocessing = preprocessing.replace(crop=size)
    spec = meta.spec if isinstance(meta, ModelMeta) else None
    channels = spec.in_channels if spec is not None else 3
    shape = [1, channels, size, size] if layout == "NCHW" else [1, size, size, channels]
    return {
        "squeezenet_sidecar": SIDECAR_VERSION,
        "format": file_format,
        "precision": precision,
        "input": {"layout": layout, "shape": shape, "dtype": "float32"},
        "output": {"shape": [1, spec.num_classes if spec is not None else None], "meaning": "logits"},
        "class_names": list(meta.labels) if isinstance(meta, ModelMeta) else None,
        "spec": json.loads(spec.to_json()) if spec is not None else None,
        "preprocessing": json.loads(preprocessing.to_json()) if preprocessing is not None else None,
        **details,
    }


def write_sidecar(path: str | Path, content: dict[str, Any]) -> Path:
    target = sidecar_path(path)
    target.write_text(json.dumps(content, indent=2) + "\n")
    return target


def read_sidecar(path: str | Path) -> tuple[ModelMeta | None, dict[str, Any]]:
    """The ModelMeta and the raw content of the JSON file beside ``path``; (None, {}) when there is none."""
    target = sidecar_path(path)
    if not target.is_file():
        return None, {}
    try:
        content = json.loads(target.read_text())
        if not isinstance(content, dict) or content.get("squeezenet_sidecar") != SIDECAR_VERSION:
            raise ValueError("not a squeezenet sidecar of version 1")
        spec = Spec.from_json(json.dumps(content["spec"])) if content.get("spec") else None
        recipe = content.get("preprocessing")
        preprocessing = Preprocessing.from_json(json.dumps(recipe)) if recipe else None
        names = content.get("class_names")
        class_names = tuple(str(name) for name in names) if isinstance(names, list) else None
        meta = ModelMeta(spec, preprocessing, class_names) if spec is not None else None
    except (ValueError, KeyError, TypeError, SqueezeNetError) as error:
        raise WeightsError(f"{target}: bad squeezenet sidecar ({error})") from None
    return meta, content


def device_file(path: str | Path) -> tuple[Path, ModelMeta | None, dict[str, Any]]:
    """An on-device model file that must exist, with the facts of the JSON beside it (read_sidecar)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such model file")
    meta, content = read_sidecar(path)
    return path, meta, content


def sidecar_input_shape(content: dict[str, Any]) -> tuple[int, int, int] | None:
    """(C, H, W) of an NCHW input as the sidecar states it, for the backend's shape check."""
    shape = content.get("input", {}).get("shape")
    if not isinstance(shape, list) or len(shape) != 4 or content["input"].get("layout") != "NCHW":
        return None
    return (int(shape[1]), int(shape[2]), int(shape[3]))
