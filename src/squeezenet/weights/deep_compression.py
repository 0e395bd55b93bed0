"""The paper's Deep Compression file (``compressed_SqueezeNet.net``): byte layout <-> per-layer arrays.

Layout (little-endian; see ../shared/weights/deep_compression_v1.0/FORMAT.md):
``uint32 nz[L]``, then per layer ``float32 codebook[256]``, ``float32 bias[out]``,
``uint8 code[nz]``, ``uint8 gaps[(nz - 1) // 2 + 1]`` (4-bit gaps, low nibble
first). Stored entry k sits at flat OIHW position ``sum(gap[0..k] + 1) - 1``;
runs of more than 15 zeros are bridged by filler entries whose code points at
codebook[0] = 0. The file holds no shapes, so parsing needs the bias length of
each layer (from the spec) and decoding needs each weight shape.

Kept as small pure functions (parse -> CompressedLayer -> dense weights, and
``serialize`` back to bytes) so a writer can reuse them. Every count read from
the file is checked against the bytes that remain before anything is sliced,
so a forged count gives a WeightsError, never a huge allocation. ``read``
builds the model: layers in file order are the convolutions with a Deep
Compression name (``names.layer_names``), on Caffe's v1.0 spec (conv10 pad 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import WeightsError
from ..model import SqueezeNet
from ..preprocess import CAFFE, Preprocessing
from ..spec import Spec
from .caffe import release_spec
from .files import read_bytes
from .fit import build_first_fit, check_plain_convolutions, fit, foreign_names
from .names import layer_names

CODEBOOK_SIZE = 256
MAX_GAP = 15


@dataclass(frozen=True)
class CompressedLayer:
    """One layer as stored: shared values, dense biases, per-entry codes and unpacked 4-bit gaps."""

    codebook: np.ndarray  # float32 (256,)
    bias: np.ndarray  # float32 (out_channels,)
    codes: np.ndarray  # uint8 (nz,)
    gaps: np.ndarray  # uint8 (nz,), each 0..15

    @property
    def stored(self) -> int:
        return len(self.codes)


def gap_bytes(stored: int) -> int:
    """Bytes holding ``stored`` 4-bit gaps: two per byte (FORMAT.md's ``(nz - 1) // 2 + 1``)."""
    return (stored + 1) // 2


def unpack_nibbles(packed: np.ndarray, count: int) -> np.ndarray:
    """Two 4-bit values per byte, low nibble first -> ``count`` uint8 values."""
    values = np.empty(2 * len(packed), dtype=np.uint8)
    values[0::2] = packed & 0x0F
    values[1::2] = packed >> 4
    return values[:count]


def pack_nibbles(values: np.ndarray) -> np.ndarray:
    """Inverse of unpack_nibbles (an odd count leaves the last high nibble 0)."""
    values = np.asarray(values, dtype=np.uint8)
    if values.size and int(values.max()) > MAX_GAP:
        raise ValueError(f"4-bit values must be at most {MAX_GAP}")
    padded = np.zeros(gap_bytes(len(values)) * 2, dtype=np.uint8)
    padded[: len(values)] = values
    return padded[0::2] | (padded[1::2] << 4)


def parse(data: bytes, bias_sizes: Sequence[int], source: str = "Deep Compression file") -> list[CompressedLayer]:
    """Split the file into its layers; ``bias_sizes`` are the out-channel counts in file order."""
    header = 4 * len(bias_sizes)
    if len(data) < header:
        raise WeightsError(f"{source}: {len(data)} bytes is shorter than the {header}-byte header of "
                           f"{len(bias_sizes)} layer counts (truncated?)")
    counts = np.frombuffer(data, dtype="<u4", count=len(bias_sizes)).astype(np.int64)
    offset = header
    layers = []
    for index, (stored, out_channels) in enumerate(zip(counts.tolist(), bias_sizes, strict=True)):
        size = 4 * CODEBOOK_SIZE + 4 * out_channels + stored + gap_bytes(stored)
        if offset + size > len(data):
            raise WeightsError(
                f"{source}: layer {index} needs {size:,} bytes (nz={stored:,}) but only {len(data) - offset:,} "
                "remain (truncated, corrupt, or a file for another architecture)"
            )
        codebook = np.frombuffer(data, dtype="<f4", count=CODEBOOK_SIZE, offset=offset)
        offset += 4 * CODEBOOK_SIZE
        bias = np.frombuffer(data, dtype="<f4", count=out_channels, offset=offset)
        offset += 4 * out_channels
        codes = np.frombuffer(data, dtype=np.uint8, count=stored, offset=offset)
        offset += stored
        packed = np.frombuffer(data, dtype=np.uint8, count=gap_bytes(stored), offset=offset)
        offset += gap_bytes(stored)
        layers.append(CompressedLayer(codebook.astype(np.float32), bias.astype(np.float32), codes.copy(),
                                      unpack_nibbles(packed, stored)))
    if offset != len(data):
        raise WeightsError(f"{source}: {len(data) - offset:,} bytes left after the last layer "
                           "(corrupt, or a file for another architecture)")
    return layers


def positions(gaps: np.ndarray) -> np.ndarray:
    """Flat positions of the stored entries: each gap counts the zeros skipped before its entry."""
    return np.cumsum(gaps.astype(np.int64) + 1) - 1


def encode_positions(flat_positions: np.ndarray, gap_bits: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of ``positions``: strictly increasing flat positions -> (gaps, index of each real entry).

    The stored entries are the given ones plus fillers: a run of zeros longer than
    the largest gap (``2**gap_bits - 1``, 15 here) is bridged greedily by filler entries
    with the largest gap, whose code must point at the zero. This is how the released
    file places its fillers, so re-encoding what ``parse`` read gives the same entries.
    Shared with the ``.sqz`` container (``squeezenet.compress``), which allows other gap widths.
    """
    where = np.asarray(flat_positions, dtype=np.int64)
    if gap_bits < 1:
        raise ValueError(f"gap_bits must be at least 1, got {gap_bits}")
    if len(where) and (where[0] < 0 or (np.diff(where) <= 0).any()):
        raise ValueError("positions must be non-negative and strictly increasing")
    stride = 1 << gap_bits
    skipped = np.diff(where, prepend=-1) - 1
    fillers = skipped // stride
    real = np.arange(len(where)) + np.cumsum(fillers)
    gaps = np.full(len(where) + int(fillers.sum()), stride - 1, dtype=np.int64)
    gaps[real] = skipped - fillers * stride
    return gaps, real


def decode_layer(layer: CompressedLayer, shape: Sequence[int], source: str = "layer") -> np.ndarray:
    """Dense float32 weights of ``shape`` (OIHW); entries not stored are 0."""
    size = math.prod(shape)
    dense = np.zeros(size, dtype=np.float32)
    if layer.stored:
        where = positions(layer.gaps)
        if where[-1] >= size:
            raise WeightsError(f"{source}: stored entries reach position {int(where[-1]):,} but the layer "
                               f"has only {size:,} weights (corrupt, or a file for another architecture)")
        dense[where] = layer.codebook[layer.codes]
    return dense.reshape(tuple(shape))


def decode(data: bytes, shapes: Sequence[Sequence[int]], names: Sequence[str] | None = None,
           source: str = "Deep Compression file") -> list[tuple[np.ndarray, np.ndarray]]:
    """(dense weights, bias) for each layer, given every weight shape (OIHW) in file order."""
    names = names or [f"layer {i}" for i in range(len(shapes))]
    layers = parse(data, [shape[0] for shape in shapes], source)
    return [(decode_layer(layer, shape, f"{source}: {name}"), layer.bias)
            for layer, shape, name in zip(layers, shapes, names, strict=True)]


def serialize(layers: Sequence[CompressedLayer]) -> bytes:
    """The exact bytes ``parse`` reads: header of counts, then each layer's arrays."""
    parts = [np.array([layer.stored for layer in layers], dtype="<u4").tobytes()]
    for layer in layers:
        if len(layer.codebook) != CODEBOOK_SIZE:
            raise ValueError(f"a codebook holds {CODEBOOK_SIZE} values, got {len(layer.codebook)}")
        parts += [np.asarray(layer.codebook, dtype="<f4").tobytes(), np.asarray(layer.bias, dtype="<f4").tobytes(),
                  np.asarray(layer.codes, dtype=np.uint8).tobytes(), pack_nibbles(layer.gaps).tobytes()]
    return b"".join(parts)


# -- a model from the file -------------------------------------------------------------


def read(path: Path, arch: str | Spec | None) -> tuple[SqueezeNet, Preprocessing | None]:
    """The model (v1.0 unless ``arch`` says otherwise) that the file's layers fill; Caffe's preprocessing."""
    data = read_bytes(path)

    def convert(model: SqueezeNet) -> dict[str, torch.Tensor]:
        check_plain_convolutions(model.spec, path, "Deep Compression")
        expected = [(row.deep_compression, row.module) for row in layer_names(model.spec)
                    if row.deep_compression is not None]
        shapes = model.state_dict()
        decoded = decode(data, [tuple(shapes[f"{module}.weight"].shape) for _, module in expected],
                         [name for name, _ in expected], f"{path} (read as architecture {model.spec.name!r})")
        state = {}
        for (_, module), (weight, bias) in zip(expected, decoded, strict=True):
            state[f"{module}.weight"], state[f"{module}.bias"] = torch.from_numpy(weight), torch.from_numpy(bias)
        return fit(state, model, str(path), foreign_names=foreign_names(expected))

    return build_first_fit(path, arch, release_spec, convert, None), CAFFE
