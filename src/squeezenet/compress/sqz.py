"""Writing the ``.sqz`` container (layout and reader in ``weights.sqz``), and the paper's ``.net`` layout.

``encode_sqz`` stores each shared convolution in whichever layout (sparse
relative indices with a chosen gap width, or dense codes) and stream coding
(fixed-width or canonical Huffman) makes it smallest, and reports the exact
bytes of every section. ``shared_from_net`` and ``encode_net`` convert to and
from the paper's own file, whose bytes ``weights.deep_compression`` defines.
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

from ..errors import WeightsError
from ..model import SqueezeNet
from ..preprocess import Preprocessing
from ..weights import deep_compression
from ..weights.bitpack import pack_bits, packed_size
from ..weights.deep_compression import encode_positions
from ..weights.files import write_atomic
from ..weights.names import layer_names, module_paths
from ..weights.sqz import (
    FORMAT_VERSION,
    LAYOUTS,
    MAGIC,
    MAX_BITS,
    MAX_GAP_BITS,
    RAW_DTYPES,
    VALUE_DTYPES,
    SharedLayer,
)
from . import huffman
from .layers import CompressionError


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
    paths = module_paths(model.spec)
    unknown = [name for name in shared if name not in paths]
    if unknown:
        raise CompressionError(f"no convolution named {unknown[0]!r} in this model")
    by_path = {paths[name] + ".weight": layer for name, layer in shared.items()}
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


# -- the paper's .net layout ---------------------------------------------------------


def shared_from_net(layers: Sequence[deep_compression.CompressedLayer], model: SqueezeNet,
                    source: str = "Deep Compression file") -> dict[str, SharedLayer]:
    """What ``deep_compression.parse`` read, as shared layers (8-bit codes) of ``model``'s convolutions."""
    expected = [row for row in layer_names(model.spec) if row.deep_compression is not None]
    if len(layers) != len(expected):
        raise WeightsError(f"{source}: {len(layers)} layers, but architecture {model.spec.name!r} has {len(expected)}")
    state = model.state_dict()
    shared = {}
    for layer, row in zip(layers, expected, strict=True):
        foreign, shape = row.deep_compression, tuple(state[f"{row.module}.weight"].shape)
        if layer.codebook[0] != 0.0:
            raise WeightsError(f"{source}: {foreign}: codebook entry 0 is {layer.codebook[0]}, not the zero weight")
        where = deep_compression.positions(layer.gaps)
        if len(where) and where[-1] >= math.prod(shape):
            raise WeightsError(f"{source}: {foreign}: stored entries reach past its {math.prod(shape):,} weights")
        codes = np.zeros(math.prod(shape), dtype=np.int64)
        codes[where] = layer.codes
        shared[row.short] = SharedLayer(row.short, shape, 8, layer.codebook.astype(np.float32), codes)
    return shared


def encode_net(model: SqueezeNet, shared: Mapping[str, SharedLayer]) -> tuple[bytes, SqzSize]:
    """The paper's layout (8-bit codes, 256 float32 values, 4-bit gaps, no Huffman) for ``model``'s shared layers."""
    layers = []
    sizes = []
    state = model.state_dict()
    for row in layer_names(model.spec):
        if row.deep_compression is None:
            raise CompressionError(f"the .net layout has no place for {row.short} (a bypass convolution)")
        foreign, path, layer = row.deep_compression, row.module, shared.get(row.short)
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

