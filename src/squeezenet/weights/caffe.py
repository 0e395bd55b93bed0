"""Caffe ``.caffemodel`` files (binary NetParameter) -> named weight arrays.

The schema is ``caffe.proto`` beside this file, a minimal subset written for
this package. It is not compiled: a small reader below turns it into a
``FileDescriptorProto`` at first use and protobuf builds the message classes
at run time. Why: generated ``_pb2`` code is tied to the protobuf version that
generated it (gencode older or newer than the runtime warns or fails across
the ``protobuf>=4.21`` range we support), and no protoc is needed to change
the schema. The ``.proto`` file stays the one source of truth.

Both layer layouts are read: the modern ``layer`` field (LayerParameter, type
as a string) and the legacy V1 ``layers`` field (type as an enum), with blob
shapes from ``BlobShape`` or the legacy num/channels/height/width.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from ..errors import WeightsError

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
