"""Caffe ``.caffemodel`` files (binary NetParameter) -> named weight arrays -> a SqueezeNet.

The schema is ``caffe.proto`` beside this file, a minimal subset written for
this package. It is not compiled: a small reader below turns it into a
``FileDescriptorProto`` at first use and protobuf builds the message classes
at run time. Why: generated ``_pb2`` code is tied to the protobuf version that
generated it (gencode older or newer than the runtime warns or fails across
the ``protobuf>=4.21`` range we support), and no protoc is needed to change
the schema. The ``.proto`` file stays the one source of truth.

Both layer layouts are read: the modern ``layer`` field (LayerParameter, type
as a string) and the legacy V1 ``layers`` field (type as an enum), with blob
shapes from ``BlobShape`` or the legacy num/channels/height/width. ``read``
matches layers to convolutions by their Caffe names (``names.layer_names``);
v1.0 weights get conv10's pad of 1 back (see ``release_spec``).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from ..errors import WeightsError
from ..model import SqueezeNet
from ..preprocess import CAFFE, Preprocessing
from ..spec import Spec
from .files import read_bytes
from .fit import build_first_fit, check_plain_convolutions, classes_of, fit, foreign_names
from .names import layer_names

SCHEMA = Path(__file__).with_name("caffe.proto")
V1_CONVOLUTION = 4  # V1LayerParameter.LayerType.CONVOLUTION

_SCALAR_TYPES = {
    "double": descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
    "float": descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT,
    "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    "int32": descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
    "uint32": descriptor_pb2.FieldDescriptorProto.TYPE_UINT32,
    "bool": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
}
_LABELS = {
    "optional": descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    "repeated": descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
}
_FIELD = re.compile(r"(optional|repeated)\s+(\w+)\s+(\w+)\s*=\s*(\d+)\s*(\[\s*packed\s*=\s*true\s*\])?")
_MESSAGE = re.compile(r"message\s+(\w+)\s*\{([^{}]*)\}")


def schema_descriptor(text: str) -> descriptor_pb2.FileDescriptorProto:
    """Our proto2 subset -> a FileDescriptorProto; anything outside the subset is an error, not skipped."""
    text = re.sub(r"//[^\n]*", "", text)
    package = re.search(r"^\s*package\s+([\w.]+)\s*;", text, re.MULTILINE)
    if package is None:
        raise ValueError(f"{SCHEMA.name}: no package statement")
    file = descriptor_pb2.FileDescriptorProto(name="squeezenet_caffe.proto", package=package.group(1),
                                              syntax="proto2")
    for message_match in _MESSAGE.finditer(text):
        message = file.message_type.add(name=message_match.group(1))
        for statement in filter(None, (s.strip() for s in message_match.group(2).split(";"))):
            field_match = _FIELD.fullmatch(statement)
            if field_match is None:
                raise ValueError(f"{SCHEMA.name}: unsupported statement in {message.name}: {statement!r}")
            label, type_name, name, number, packed = field_match.groups()
            field = message.field.add(name=name, number=int(number), label=_LABELS[label])
            if type_name in _SCALAR_TYPES:
                field.type = _SCALAR_TYPES[type_name]
            else:
                field.type = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
                field.type_name = f".{file.package}.{type_name}"
            if packed:
                field.options.packed = True
    rest = _MESSAGE.sub("", text)
    rest = re.sub(r"^\s*(syntax\s*=\s*\"proto2\"|package\s+[\w.]+)\s*;", "", rest, flags=re.MULTILINE)
    if rest.strip():
        raise ValueError(f"{SCHEMA.name}: unsupported text outside messages: {rest.strip()[:60]!r}")
    return file


@functools.cache
def message_class(name: str) -> Any:
    """The message class ``name`` of caffe.proto, built on first use in a private descriptor pool."""
    file = schema_descriptor(SCHEMA.read_text(encoding="utf-8"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    descriptor = pool.FindMessageTypeByName(f"{file.package}.{name}")
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.22
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)  # pragma: no cover


@dataclass(frozen=True)
class CaffeLayer:
    """One layer with weights: its name, type, blobs (numpy float32) and conv padding if recorded."""

    name: str
    type: str
    blobs: tuple[np.ndarray, ...]
    pad: int | None = None


def read_caffemodel(data: bytes, source: str = "caffemodel") -> list[CaffeLayer]:
    """Every layer that carries blobs, in file order; convolution layers are marked type "Convolution"."""
    net = message_class("NetParameter")()
    try:
        net.ParseFromString(data)
    except DecodeError as error:
        raise WeightsError(f"{source}: not a readable Caffe NetParameter (truncated or corrupt: {error})") from None
    layers = []
    for layer in net.layer:
        if layer.blobs:
            layers.append(_layer(layer, layer.type, source))
    for layer in net.layers:
        if layer.blobs:
            kind = "Convolution" if layer.type == V1_CONVOLUTION else f"V1 type {layer.type}"
            layers.append(_layer(layer, kind, source))
    if not layers:
        raise WeightsError(f"{source}: no layer with weights found (not a caffemodel, or a deploy prototxt "
                           "without weights)")
    return layers


def _layer(layer: Any, kind: str, source: str) -> CaffeLayer:
    blobs = tuple(_blob_array(blob, f"{source}: layer {layer.name!r} blob {index}")
                  for index, blob in enumerate(layer.blobs))
    pad = None
    if layer.HasField("convolution_param"):
        param = layer.convolution_param
        pads = {*param.pad} | ({param.pad_h, param.pad_w} if param.HasField("pad_h") else set())
        if len(pads) > 1:
            raise WeightsError(f"{source}: layer {layer.name!r} has unequal padding {sorted(pads)}, "
                               "which SqueezeNet never uses")
        pad = pads.pop() if pads else 0
    return CaffeLayer(layer.name, kind, blobs, pad)


def _blob_array(blob: Any, where: str) -> np.ndarray:
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    else:
        shape = tuple(int(getattr(blob, f)) for f in ("num", "channels", "height", "width"))
    if any(d < 0 for d in shape):
        raise WeightsError(f"{where}: negative dimension in shape {shape}")
    values = blob.data if len(blob.data) else blob.double_data
    if len(values) != math.prod(shape):
        raise WeightsError(f"{where}: holds {len(values)} values but its shape {shape} needs {math.prod(shape)}")
    return np.asarray(values, dtype=np.float32).reshape(shape)


# -- a model from the layers ---------------------------------------------------


def might_be(head: bytes) -> bool:
    """A weak sign, trusted only when the extension says nothing: NetParameter field 1, 2 or 100 first."""
    return head[:1] in (b"\x0a", b"\x12") or head[:2] == b"\xa2\x06"


def release_spec(spec: Spec) -> Spec:
    """The spec as Caffe built it: v1.0's conv10 has pad 1 there (torchvision's port dropped it)."""
    return spec.replace(conv10_padding=1) if spec.name == "1_0" else spec


def read(path: Path, arch: str | Spec | None) -> tuple[SqueezeNet, Preprocessing | None]:
    """The model whose convolutions the file's layers fill, by Caffe name; Caffe's preprocessing."""
    layers = {layer.name: layer for layer in read_caffemodel(read_bytes(path), str(path))}
    final = layers.get("conv10")
    classes = classes_of(final.blobs[0] if final is not None and final.blobs else None)

    def as_released(spec: Spec) -> Spec:
        if final is not None and final.pad is not None:
            return spec.replace(conv10_padding=final.pad)
        return release_spec(spec)

    return build_first_fit(path, arch, as_released, lambda model: _convert(layers, model, path), classes), CAFFE


def _convert(layers: dict[str, CaffeLayer], model: SqueezeNet, path: Path) -> dict[str, torch.Tensor]:
    """Our state dict from the file's layers, every layer placed and every convolution filled."""
    check_plain_convolutions(model.spec, path, "Caffe")
    expected = [(row.caffe, row.module) for row in layer_names(model.spec) if row.caffe is not None]
    known = {name for name, _ in expected}
    for name in layers:
        if name not in known:
            raise WeightsError(f"{path}: layer {name!r} has no place in architecture {model.spec.name!r}")
    state: dict[str, torch.Tensor] = {}
    targets = model.state_dict()
    for name, module in expected:
        if name not in layers:
            raise WeightsError(f"{path}: no weights for layer {name!r} of architecture {model.spec.name!r}")
        layer = layers[name]
        if layer.type != "Convolution" or len(layer.blobs) != 2:
            raise WeightsError(f"{path}: layer {name!r} is a {layer.type} with {len(layer.blobs)} blobs, "
                               "expected a Convolution with weight and bias")
        for suffix, blob in zip(("weight", "bias"), layer.blobs, strict=True):
            state[f"{module}.{suffix}"] = torch.from_numpy(_drop_legacy_axes(blob, targets[f"{module}.{suffix}"]))
    return fit(state, model, str(path), foreign_names=foreign_names(expected))


def _drop_legacy_axes(blob: np.ndarray, target: torch.Tensor) -> np.ndarray:
    """Legacy 4-D blobs pad shapes with 1s (a bias is 1x1x1xN); reshape when only those 1s differ."""
    if blob.shape != tuple(target.shape) and [d for d in blob.shape if d != 1] == [d for d in target.shape if d != 1]:
        return blob.reshape(tuple(target.shape))
    return blob
