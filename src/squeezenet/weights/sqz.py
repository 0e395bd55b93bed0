"""The ``.sqz`` container, read: a Deep-Compressed SqueezeNet in one self-describing file (written by compress).

Layout::

    b"SQZ1"                 magic
    uint32 (LE)             length of the compressed header
    zlib(JSON header)       format version, the Spec, preprocessing, metadata, and one entry per tensor
    body                    each tensor's sections, in header order, back to back

A convolution weight (``"kind": "shared"``) is stored as its codebook (the
non-zero shared values, float32 or float16; value 0 is implied as code 0),
then its stream of codes and, in the sparse layout, its stream of gaps; a
Huffman-coded stream is preceded by the code lengths of its alphabet (4 bits
each). Layouts:

* ``sparse``: Deep Compression's relative indices: one entry per kept weight plus
  filler entries (``weights.deep_compression.encode_positions``), each with a code and a gap of ``gap_bits``;
* ``dense``: one code per weight (code 0 = zero): cheaper for layers with few zeros.

Each stream is fixed-width (most significant bit first) or canonical Huffman
codes, whichever is smaller when Huffman coding is on. Everything else (biases, batch-norm tensors) is stored raw
(``"kind": "raw"``) as float32, float16 or its own integer type.

Reading is bounded: the header is limited in size, the network the spec
describes is limited in parameters before anything is built, every count is
checked against the bytes that hold it, and the body must end exactly where
the header says. Any violation is a one-line WeightsError naming the file.
"""

from __future__ import annotations

import json
import math
import reprlib
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import SqueezeNetError, WeightsError
from ..files import read_file
from ..model import SqueezeNet
from ..preprocess import Preprocessing
from ..spec import MAX_FIRE_MODULES, Spec
from . import deep_compression, huffman
from .bitpack import packed_size, unpack_bits
from .names import layer_names

MAGIC = b"SQZ1"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 1 << 20  # compressed header; ours are about 1 KB
MAX_HEADER_TEXT = 1 << 24  # the header after decompression
MAX_PARAMETERS = 1 << 25  # 128 MB as float32: far above any SqueezeNet, far below a forged size
MAX_FILE_BYTES = 1 << 30
MAX_BITS = 8  # widest shared-weight code
LAYOUTS = ("sparse", "dense")
MAX_GAP_BITS = 8
VALUE_DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}
RAW_DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2"), "int64": np.dtype("<i8")}


@dataclass
class SharedLayer:
    """One layer's weights as codes into a codebook of shared values; code 0 is the weight 0."""

    name: str
    shape: tuple[int, ...]
    bits: int
    codebook: np.ndarray  # float32 (at most 2**bits,), codebook[0] == 0.0
    codes: np.ndarray  # int64 (numel,), flat C (OIHW) order

    def weights(self) -> np.ndarray:
        return self.codebook[self.codes].reshape(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def kept(self) -> int:
        """Weights stored with a non-zero code."""
        return int(np.count_nonzero(self.codes))


def recognises(head: bytes) -> bool:
    """The four magic bytes every .sqz file starts with."""
    return head.startswith(MAGIC)


@dataclass
class SqzContents:
    """Everything a .sqz file holds, decoded."""

    spec: Spec
    state_dict: dict[str, torch.Tensor]
    shared: dict[str, SharedLayer]
    preprocessing: Preprocessing | None
    metadata: dict[str, str]


def decode_sqz(data: bytes, source: str = "sqz file") -> SqzContents:
    """Parse and check a whole .sqz file (see the module docstring for the bounds)."""
    if len(data) < 8 or data[:4] != MAGIC:
        raise WeightsError(f"{source}: not a .sqz file (no SQZ1 magic)" if len(data) >= 4 and data[:4] != MAGIC
                           else f"{source}: truncated .sqz file ({len(data)} bytes)")
    header_bytes = int.from_bytes(data[4:8], "little")
    if header_bytes > MAX_HEADER_BYTES or 8 + header_bytes > len(data):
        raise WeightsError(f"{source}: header of {header_bytes:,} bytes is larger than the file or the "
                           f"{MAX_HEADER_BYTES:,}-byte limit (truncated or corrupt)")
    header = _read_header(data[8:8 + header_bytes], source)
    spec, skeleton = _read_spec(header, source)
    preprocessing = None
    if header.get("preprocessing") is not None:
        try:
            preprocessing = Preprocessing.from_dict(header["preprocessing"])
        except SqueezeNetError as error:
            raise WeightsError(f"{source}: bad preprocessing in header: {error}") from None
    metadata = header.get("metadata", {})
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise WeightsError(f"{source}: header metadata must map strings to strings")
    expected = skeleton.state_dict()
    tensors = header.get("tensors")
    if not isinstance(tensors, list):
        raise WeightsError(f"{source}: header lists no tensors")
    names = [entry.get("name") if isinstance(entry, dict) else None for entry in tensors]
    if not all(isinstance(name, str) for name in names):
        index = next(i for i, name in enumerate(names) if not isinstance(name, str))
        raise WeightsError(f"{source}: header tensor {index} has no name (a string), got {reprlib.repr(names[index])}")
    if sorted(names) != sorted(expected):
        missing = [n for n in expected if n not in names]
        extra = [n for n in names if n not in expected]
        what = f"no tensor {missing[0]!r}" if missing else (
            f"tensor {extra[0]!r} has no place in this architecture" if extra else "a tensor is listed twice")
        raise WeightsError(f"{source}: {what} (spec {spec.name!r})")
    state: dict[str, torch.Tensor] = {}
    shared: dict[str, SharedLayer] = {}
    offset = 8 + header_bytes
    short_names = {row.module + ".weight": row.short for row in layer_names(spec)}
    for entry in tensors:
        name = entry["name"]
        shape = tuple(expected[name].shape)
        if entry.get("shape") != list(shape):
            raise WeightsError(f"{source}: {name} has shape {entry.get('shape')} but spec {spec.name!r} "
                               f"needs {list(shape)}")
        label = f"{source}: {name}"
        if entry.get("kind") == "shared" and name in short_names:
            layer, offset = _decode_shared(data, offset, entry, short_names[name], shape, label)
            shared[layer.name] = layer
            state[name] = torch.from_numpy(layer.weights())
        elif entry.get("kind") == "raw":
            state[name], offset = _decode_raw(data, offset, entry, shape, label)
        else:
            raise WeightsError(f"{label}: unknown tensor kind {entry.get('kind')!r}")
    if offset != len(data):
        raise WeightsError(f"{source}: {len(data) - offset:,} bytes left after the last tensor (corrupt)")
    return SqzContents(spec, state, shared, preprocessing, dict(metadata))


def read_sqz(path: str | Path) -> SqzContents:
    """A whole .sqz file, decoded and checked; its size is limited before it is read."""
    data = read_file(path, WeightsError, "weights file", limit=MAX_FILE_BYTES)
    return decode_sqz(data, str(path))


def read(path: Path, arch: str | Spec | None) -> tuple[SqueezeNet, Preprocessing | None]:
    """A dense model from a .sqz file (the spec comes from the file; ``arch`` only checks it)."""
    contents = read_sqz(path)
    if isinstance(arch, str) and arch != contents.spec.name:
        raise WeightsError(f"{path}: holds weights for architecture {contents.spec.name!r}, not {arch!r}")
    if isinstance(arch, Spec) and arch != contents.spec:
        raise WeightsError(f"{path}: holds weights for another spec than the one given")
    model = SqueezeNet(contents.spec)
    model.load_state_dict(contents.state_dict, strict=True)
    return model, contents.preprocessing


# -- reading, piece by piece -------------------------------------------------------


def _read_header(packed: bytes, source: str) -> dict[str, Any]:
    decompressor = zlib.decompressobj()
    try:
        text = decompressor.decompress(packed, MAX_HEADER_TEXT)
    except zlib.error as error:
        raise WeightsError(f"{source}: corrupt header ({error})") from None
    if decompressor.unconsumed_tail or not decompressor.eof:
        raise WeightsError(f"{source}: header is truncated or expands past {MAX_HEADER_TEXT:,} bytes")
    try:
        header = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise WeightsError(f"{source}: header is not valid JSON ({error})") from None
    if not isinstance(header, dict) or header.get("format") != "sqz":
        raise WeightsError(f"{source}: header does not describe a .sqz file")
    if header.get("version") != FORMAT_VERSION:
        raise WeightsError(f"{source}: .sqz format version {header.get('version')!r} is not supported "
                           f"(this reader knows {FORMAT_VERSION})")
    return header


def _read_spec(header: dict[str, Any], source: str) -> tuple[Spec, SqueezeNet]:
    """The spec, and the network it describes built on the meta device (no memory) to check its size."""
    raw = header.get("spec")
    fires = raw.get("fires") if isinstance(raw, dict) else None
    meta = fires.get("metaparameters") if isinstance(fires, dict) else None
    count = meta.get("num_fires") if isinstance(meta, dict) else len(fires) if isinstance(fires, list) else None
    if isinstance(count, int) and count > MAX_FIRE_MODULES:  # building that many modules would itself take long
        raise WeightsError(f"{source}: spec has {count:,} Fire modules, over the {MAX_FIRE_MODULES} limit "
                           "(corrupt or forged header)")
    try:
        spec = Spec.from_dict(raw)  # type: ignore[arg-type]
        with torch.device("meta"):
            skeleton = SqueezeNet(spec)
    except SqueezeNetError as error:
        raise WeightsError(f"{source}: bad spec in header: {error}") from None
    parameters = sum(t.numel() for t in skeleton.state_dict().values())
    if parameters > MAX_PARAMETERS:
        raise WeightsError(f"{source}: spec describes {parameters:,} parameters, over the "
                           f"{MAX_PARAMETERS:,} limit (corrupt or forged header)")
    return spec, skeleton


def _int_field(entry: dict[str, Any], key: str, low: int, high: int, label: str) -> int:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise WeightsError(f"{label}: {key} must be an integer from {low:,} to {high:,}, got {value!r}")
    return value


def _take(data: bytes, offset: int, size: int, label: str, what: str) -> tuple[bytes, int]:
    if offset + size > len(data):
        raise WeightsError(f"{label}: {what} needs {size:,} bytes but only {len(data) - offset:,} remain (truncated)")
    return data[offset:offset + size], offset + size


def _read_stream(data: bytes, offset: int, entry: dict[str, Any], what: str, count: int, alphabet: int,
                 bits: int, label: str) -> tuple[np.ndarray, int]:
    """One stream of ``count`` symbols (``what``: codes or gaps): its Huffman table if any, then its bytes."""
    use_huffman = entry.get(f"{what}_huffman")
    if not isinstance(use_huffman, bool):
        raise WeightsError(f"{label}: {what}_huffman must be true or false, got {use_huffman!r}")
    stream_bytes = _int_field(entry, f"{what}_bytes", 0, len(data), label)
    if use_huffman:
        table, offset = _take(data, offset, packed_size(alphabet, 4), label, f"{what} code lengths")
        stream, end = _take(data, offset, stream_bytes, label, what)
        return huffman.decode(stream, unpack_bits(table, alphabet, 4), count, f"{label} {what}"), end
    if stream_bytes != packed_size(count, bits):
        raise WeightsError(f"{label}: {count:,} {bits}-bit {what} take {packed_size(count, bits):,} bytes, "
                           f"the header says {stream_bytes:,}")
    stream, end = _take(data, offset, stream_bytes, label, what)
    return unpack_bits(stream, count, bits), end


def _decode_shared(data: bytes, offset: int, entry: dict[str, Any], name: str, shape: tuple[int, ...],
                   label: str) -> tuple[SharedLayer, int]:
    size = math.prod(shape)
    bits = _int_field(entry, "bits", 1, MAX_BITS, label)
    values = _int_field(entry, "values", 0, 2**bits - 1, label)
    layout = entry.get("layout")
    dtype_name = entry.get("codebook")
    if layout not in LAYOUTS or dtype_name not in VALUE_DTYPES:
        raise WeightsError(f"{label}: unknown layout {layout!r} or codebook type {dtype_name!r}")
    entries = _int_field(entry, "entries", 0, size, label)
    if layout == "dense" and entries != size:
        raise WeightsError(f"{label}: a dense layer holds {size:,} codes, the header says {entries:,}")
    dtype = VALUE_DTYPES[dtype_name]
    raw, offset = _take(data, offset, values * dtype.itemsize, label, "codebook")
    codebook = np.concatenate([[0.0], np.frombuffer(raw, dtype=dtype)]).astype(np.float32)
    if not np.isfinite(codebook).all():
        raise WeightsError(f"{label}: codebook holds a non-finite value")
    alphabet = values + 1
    stored_codes, offset = _read_stream(data, offset, entry, "codes", entries, alphabet, bits, label)
    if len(stored_codes) and int(stored_codes.max()) > values:
        raise WeightsError(f"{label}: code {int(stored_codes.max())} is past the codebook of {values} values")
    if layout == "dense":
        codes = stored_codes
    else:
        gap_bits = _int_field(entry, "gap_bits", 1, MAX_GAP_BITS, label)
        gaps, offset = _read_stream(data, offset, entry, "gaps", entries, 2**gap_bits, gap_bits, label)
        positions = deep_compression.positions(gaps)
        if len(positions) and positions[-1] >= size:
            raise WeightsError(f"{label}: sparse index {int(positions[-1]):,} is past the end of {size:,} weights")
        codes = np.zeros(size, dtype=np.int64)
        codes[positions] = stored_codes
    return SharedLayer(name, shape, bits, codebook, codes), offset


def _decode_raw(data: bytes, offset: int, entry: dict[str, Any], shape: tuple[int, ...],
                label: str) -> tuple[torch.Tensor, int]:
    dtype_name = entry.get("dtype")
    if dtype_name not in RAW_DTYPES:
        raise WeightsError(f"{label}: unknown dtype {dtype_name!r}")
    dtype = RAW_DTYPES[dtype_name]
    raw, offset = _take(data, offset, math.prod(shape) * dtype.itemsize, label, "values")
    array = np.frombuffer(raw, dtype=dtype).reshape(shape)
    target = np.int64 if dtype_name == "int64" else np.float32
    return torch.from_numpy(array.astype(target)), offset
