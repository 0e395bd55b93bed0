"""The ``.sqz`` container: a Deep-Compressed SqueezeNet in one self-describing file.

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
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import SqueezeNetError, WeightsError
from ..model import SqueezeNet
from ..preprocess import Preprocessing
from ..spec import MAX_FIRE_MODULES, Spec
from ..weights import deep_compression
from ..weights.deep_compression import encode_positions
from ..weights.io import register_format, write_atomic
from ..weights.layers import DEEP_COMPRESSION_NAMES, conv_layers
from . import huffman
from .bitpack import pack_bits, packed_size, unpack_bits
from .layers import CompressionError, compressible_layers, module_path, short_name
from .quantize import MAX_BITS, SharedLayer

MAGIC = b"SQZ1"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 1 << 20  # compressed header; ours are about 1 KB
MAX_HEADER_TEXT = 1 << 24  # the header after decompression
MAX_PARAMETERS = 1 << 25  # 128 MB as float32: far above any SqueezeNet, far below a forged size
MAX_FILE_BYTES = 1 << 30
LAYOUTS = ("sparse", "dense")
MAX_GAP_BITS = 8
VALUE_DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}
RAW_DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2"), "int64": np.dtype("<i8")}


@dataclass(frozen=True)
class Encoding:
    """How shared layers are written. ``layout``/``gap_bits`` ``"auto"`` pick the smallest per layer."""

    layout: str = "auto"
    gap_bits: int | str = 4
    huffman: bool = False
    codebook_dtype: str = "float32"
    raw_dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.layout not in (*LAYOUTS, "auto"):
            raise CompressionError(f"layout must be sparse, dense or auto, got {self.layout!r}")
        if self.gap_bits != "auto" and (isinstance(self.gap_bits, bool) or not isinstance(self.gap_bits, int)
                                        or not 1 <= self.gap_bits <= MAX_GAP_BITS):
            raise CompressionError(f"gap_bits must be 1..{MAX_GAP_BITS} or 'auto', got {self.gap_bits!r}")
        if self.codebook_dtype not in VALUE_DTYPES:
            raise CompressionError(f"codebook dtype must be float32 or float16, got {self.codebook_dtype!r}")
        if self.raw_dtype not in VALUE_DTYPES:
            raise CompressionError(f"raw (bias) dtype must be float32 or float16, got {self.raw_dtype!r}")


@dataclass
class TensorBytes:
    """Exact bytes one tensor takes in the body, by section."""

    name: str
    kind: str
    sections: dict[str, int] = field(default_factory=dict)
    layout: str | None = None
    gap_bits: int | None = None
    entries: int | None = None

    @property
    def total(self) -> int:
        return sum(self.sections.values())


@dataclass
class SqzSize:
    """Where a .sqz file's bytes go: magic and header, then each tensor."""

    header: int
    tensors: list[TensorBytes]

    @property
    def total(self) -> int:
        return self.header + sum(t.total for t in self.tensors)


# -- encoding one shared layer ------------------------------------------------------


def _stream(symbols: np.ndarray, alphabet: int, bits: int, allow_huffman: bool) -> tuple[bytes, bytes, bool]:
    """(code-length table, stream, is Huffman) for ``symbols``: Huffman when allowed and smaller, else fixed-width."""
    if allow_huffman and len(symbols):
        lengths = huffman.code_lengths(np.bincount(symbols, minlength=alphabet)[:alphabet])
        if _huffman_size(symbols, lengths, alphabet) < packed_size(len(symbols), bits):
            return pack_bits(lengths, 4), huffman.encode(symbols, lengths), True
    return b"", pack_bits(symbols, bits), False


def _huffman_size(symbols: np.ndarray, lengths: np.ndarray, alphabet: int) -> int:
    return packed_size(alphabet, 4) + (huffman.encoded_bits(symbols, lengths) + 7) // 8


def _stream_size(symbols: np.ndarray, alphabet: int, bits: int, allow_huffman: bool) -> int:
    fixed = packed_size(len(symbols), bits)
    if not allow_huffman or not len(symbols):
        return fixed
    lengths = huffman.code_lengths(np.bincount(symbols, minlength=alphabet)[:alphabet])
    return min(fixed, _huffman_size(symbols, lengths, alphabet))


def sparse_entries(layer: SharedLayer, gap_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(codes, gaps) of the sparse layout: kept weights plus fillers (code 0)."""
    kept = np.flatnonzero(layer.codes)
    gaps, real = encode_positions(kept, gap_bits)
    codes = np.zeros(len(gaps), dtype=np.int64)
    codes[real] = layer.codes[kept]
    return codes, gaps


def _choose(layer: SharedLayer, encoding: Encoding) -> tuple[str, int | None]:
    """The layout (and gap width) that makes this layer smallest under ``encoding``."""
    alphabet = len(layer.codebook)
    options: list[tuple[int, str, int | None]] = []
    if encoding.layout in ("dense", "auto"):
        options.append((_stream_size(layer.codes, alphabet, layer.bits, encoding.huffman), "dense", None))
    if encoding.layout in ("sparse", "auto"):
        widths = range(1, MAX_GAP_BITS + 1) if encoding.gap_bits == "auto" else [int(encoding.gap_bits)]
        for gap_bits in widths:
            codes, gaps = sparse_entries(layer, gap_bits)
            size = (_stream_size(codes, alphabet, layer.bits, encoding.huffman)
                    + _stream_size(gaps, 2**gap_bits, gap_bits, encoding.huffman))
            options.append((size, "sparse", gap_bits))
    _, layout, gap_bits = min(options, key=lambda option: option[0])
    return layout, gap_bits


def encode_shared(layer: SharedLayer, encoding: Encoding) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Header entry and body sections of one shared layer."""
    if not 1 <= layer.bits <= MAX_BITS or len(layer.codebook) > 2**layer.bits or layer.codebook[0] != 0.0:
        raise CompressionError(f"layer {layer.name!r}: a codebook of {len(layer.codebook)} values starting with "
                               f"{layer.codebook[0]} does not fit {layer.bits}-bit codes with code 0 = 0")
    layout, gap_bits = _choose(layer, encoding)
    alphabet = len(layer.codebook)
    values = np.asarray(layer.codebook[1:], dtype=VALUE_DTYPES[encoding.codebook_dtype]).tobytes()
    header: dict[str, Any] = {
        "kind": "shared", "shape": list(layer.shape), "bits": layer.bits, "values": alphabet - 1,
        "codebook": encoding.codebook_dtype, "layout": layout,
    }
    if layout == "dense":
        code_table, codes, codes_huffman = _stream(layer.codes, alphabet, layer.bits, encoding.huffman)
        gap_table = gaps = b""
        header.update(entries=layer.size, codes_huffman=codes_huffman, codes_bytes=len(codes))
    else:
        assert gap_bits is not None
        entry_codes, entry_gaps = sparse_entries(layer, gap_bits)
        code_table, codes, codes_huffman = _stream(entry_codes, alphabet, layer.bits, encoding.huffman)
        gap_table, gaps, gaps_huffman = _stream(entry_gaps, 2**gap_bits, gap_bits, encoding.huffman)
        header.update(entries=len(entry_codes), codes_huffman=codes_huffman, codes_bytes=len(codes),
                      gap_bits=gap_bits, gaps_huffman=gaps_huffman, gaps_bytes=len(gaps))
    sections = {"codebook": values, "code_table": code_table, "codes": codes, "gap_table": gap_table, "gaps": gaps}
    return header, sections


# -- the file --------------------------------------------------------------------


def encode_sqz(model: SqueezeNet, shared: Mapping[str, SharedLayer], encoding: Encoding | None = None,
               metadata: Mapping[str, str] | None = None) -> tuple[bytes, SqzSize]:
    """The bytes of a .sqz file for ``model`` whose convolutions are given as shared layers."""
    encoding = encoding or Encoding()
    by_path = {module_path(model, name) + ".weight": layer for name, layer in shared.items()}
    entries: list[dict[str, Any]] = []
    body: list[bytes] = []
    sizes: list[TensorBytes] = []
    state = model.state_dict()
    with torch.device("meta"):
        order = list(SqueezeNet(model.spec).state_dict())  # canonical order, whatever the model's own
    missing = [name for name in order if name not in state]
    if missing:
        raise CompressionError(f"the model has no plain tensor {missing[0]!r} (still attached for fine-tuning?)")
    for name in order:
        tensor = state[name]
        if name in by_path:
            if tuple(tensor.shape) != by_path[name].shape:
                raise CompressionError(f"{name}: shared layer has shape {by_path[name].shape}, "
                                       f"the model {tuple(tensor.shape)}")
            entry, sections = encode_shared(by_path[name], encoding)
            sizes.append(TensorBytes(name, "shared", {k: len(v) for k, v in sections.items()}, entry["layout"],
                                     entry.get("gap_bits"), entry["entries"]))
        else:
            dtype = encoding.raw_dtype if tensor.is_floating_point() else "int64"
            data = tensor.detach().cpu().numpy().astype(RAW_DTYPES[dtype]).tobytes()
            entry, sections = {"kind": "raw", "shape": list(tensor.shape), "dtype": dtype}, {"data": data}
            sizes.append(TensorBytes(name, "raw", {"data": len(data)}))
        entries.append({"name": name, **entry})
        body.extend(sections.values())
    header = {"format": "sqz", "version": FORMAT_VERSION, "spec": model.spec.to_dict(), "tensors": entries,
              "metadata": dict(metadata or {})}
    if isinstance(model.preprocess, Preprocessing):
        header["preprocessing"] = model.preprocess.to_dict()
    packed_header = zlib.compress(json.dumps(header, separators=(",", ":")).encode(), 9)
    prefix = MAGIC + len(packed_header).to_bytes(4, "little") + packed_header
    return prefix + b"".join(body), SqzSize(len(prefix), sizes)


def write_sqz(path: str | Path, model: SqueezeNet, shared: Mapping[str, SharedLayer],
              encoding: Encoding | None = None, metadata: Mapping[str, str] | None = None) -> SqzSize:
    """Write a .sqz file atomically; returns where its bytes went."""
    data, size = encode_sqz(model, shared, encoding, metadata)
    write_atomic(path, data)
    return size


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
    if sorted(map(str, names)) != sorted(expected):
        missing = [n for n in expected if n not in names]
        extra = [n for n in names if n not in expected]
        what = f"no tensor {missing[0]!r}" if missing else (
            f"tensor {extra[0]!r} has no place in this architecture" if extra else "a tensor is listed twice")
        raise WeightsError(f"{source}: {what} (spec {spec.name!r})")
    state: dict[str, torch.Tensor] = {}
    shared: dict[str, SharedLayer] = {}
    offset = 8 + header_bytes
    short_names = {module_path(skeleton, short) + ".weight": short for short in compressible_layers(skeleton)}
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
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise WeightsError(f"{path}: {size:,} bytes is far larger than any .sqz file (limit {MAX_FILE_BYTES:,})")
        data = path.read_bytes()
    except FileNotFoundError:
        raise WeightsError(f"{path}: weights file not found") from None
    except OSError as error:
        raise WeightsError(f"{path}: cannot read ({error.strerror or error})") from None
    return decode_sqz(data, str(path))


def load_sqz(path: str | Path, arch: str | Spec | None = None) -> tuple[SqueezeNet, Preprocessing | None]:
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


# -- the paper's .net layout ---------------------------------------------------------


def shared_from_net(layers: Sequence[deep_compression.CompressedLayer], model: SqueezeNet,
                    source: str = "Deep Compression file") -> dict[str, SharedLayer]:
    """What ``deep_compression.parse`` read, as shared layers (8-bit codes) of ``model``'s convolutions."""
    expected = conv_layers(model.spec, DEEP_COMPRESSION_NAMES)
    if len(layers) != len(expected):
        raise WeightsError(f"{source}: {len(layers)} layers, but architecture {model.spec.name!r} has {len(expected)}")
    state = model.state_dict()
    shared = {}
    for layer, (foreign, path) in zip(layers, expected, strict=True):
        shape = tuple(state[f"{path}.weight"].shape)
        if layer.codebook[0] != 0.0:
            raise WeightsError(f"{source}: {foreign}: codebook entry 0 is {layer.codebook[0]}, not the zero weight")
        where = deep_compression.positions(layer.gaps)
        if len(where) and where[-1] >= math.prod(shape):
            raise WeightsError(f"{source}: {foreign}: stored entries reach past its {math.prod(shape):,} weights")
        codes = np.zeros(math.prod(shape), dtype=np.int64)
        codes[where] = layer.codes
        name = short_name(path)
        shared[name] = SharedLayer(name, shape, 8, layer.codebook.astype(np.float32), codes)
    return shared


def encode_net(model: SqueezeNet, shared: Mapping[str, SharedLayer]) -> tuple[bytes, SqzSize]:
    """The paper's layout (8-bit codes, 256 float32 values, 4-bit gaps, no Huffman) for ``model``'s shared layers."""
    layers = []
    sizes = []
    state = model.state_dict()
    for foreign, path in conv_layers(model.spec, DEEP_COMPRESSION_NAMES):
        layer = shared.get(short_name(path))
        if layer is None or f"{path}.bias" not in state:
            raise CompressionError(f"the .net layout needs every convolution shared, with a bias; {foreign} is not")
        if len(layer.codebook) > deep_compression.CODEBOOK_SIZE:
            raise CompressionError(f"{foreign}: the .net layout holds 8-bit codes, not {layer.bits}-bit")
        kept = np.flatnonzero(layer.codes)
        gaps, real = encode_positions(kept, 4)
        codes = np.zeros(len(gaps), dtype=np.uint8)
        codes[real] = layer.codes[kept]
        codebook = np.zeros(deep_compression.CODEBOOK_SIZE, dtype=np.float32)
        codebook[:len(layer.codebook)] = layer.codebook
        bias = state[f"{path}.bias"].detach().cpu().numpy().astype(np.float32)
        layers.append(deep_compression.CompressedLayer(codebook, bias, codes, gaps.astype(np.uint8)))
        sizes += [TensorBytes(f"{path}.weight", "shared", {
            "codebook": codebook.nbytes, "code_table": 0, "gap_table": 0, "codes": len(codes),
            "gaps": deep_compression.gap_bytes(len(gaps))}, "sparse", 4, len(codes)),
            TensorBytes(f"{path}.bias", "raw", {"data": bias.nbytes})]
    return deep_compression.serialize(layers), SqzSize(4 * len(layers), sizes)


register_format("sqz", MAGIC, ".sqz", load_sqz)  # sq.load reads .sqz files
