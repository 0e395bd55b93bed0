"""Byte-level mutations of real files: truncation, bit flips, forged integers, swapped ranges.

Each function returns new bytes and leaves its input alone; the hypothesis strategies pick where to
mutate. Format-aware helpers (the safetensors header, the .net counts) live here too, so the fuzz
tests only say which field they forge and to what.
"""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from hypothesis import strategies as st


def truncation_offsets(length: int, count: int, seed: int, landmarks: Iterable[int] = ()) -> list[int]:
    """Up to ``count`` distinct cut points in [0, length): the edges, around each landmark, then seeded random ones."""
    fixed = (0, 1, 2, 7, 8, 9, *(mark + d for mark in landmarks for d in (-1, 0, 1)), length // 2, length - 1)
    chosen = list(dict.fromkeys(o for o in fixed if 0 <= o < length))[:count]
    rng = random.Random(seed)
    while len(chosen) < min(count, length):
        offset = rng.randrange(length)
        if offset not in chosen:
            chosen.append(offset)
    return sorted(chosen)


def truncate(data: bytes, length: int) -> bytes:
    return data[:length]


def flip_bits(data: bytes, flips: Sequence[tuple[int, int]]) -> bytes:
    """Flip bit ``bit`` of byte ``offset`` for each (offset, bit) pair."""
    mutated = bytearray(data)
    for offset, bit in flips:
        mutated[offset] ^= 1 << bit
    return bytes(mutated)


def put_uint(data: bytes, offset: int, width: int, value: int) -> bytes:
    """Overwrite a little-endian unsigned integer of ``width`` bytes (a forged length or count)."""
    value %= 1 << (8 * width)
    return data[:offset] + value.to_bytes(width, "little") + data[offset + width:]


def swap(data: bytes, first: int, second: int, length: int) -> bytes:
    """Exchange two non-overlapping ranges of ``length`` bytes."""
    first, second = sorted((first, second))
    if first + length > second:
        raise ValueError("ranges overlap")
    a, b = data[first:first + length], data[second:second + length]
    return data[:first] + b + data[first + length:second] + a + data[second + length:]


def write_case(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


# -- hypothesis strategies -------------------------------------------------------------------------


def bit_flips(start: int, stop: int, most: int = 4) -> st.SearchStrategy[list[tuple[int, int]]]:
    """1..``most`` flips of single bits in bytes [start, stop)."""
    return st.lists(st.tuples(st.integers(start, stop - 1), st.integers(0, 7)), min_size=1, max_size=most,
                    unique_by=lambda flip: flip)


FORGED_COUNTS = st.one_of(
    st.sampled_from([0, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**63 - 1, 2**63, 2**64 - 1]),
    st.integers(0, 2**64 - 1),
)
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
              st.sampled_from([float("nan"), float("inf"), -1, 0, 10**9]), st.text(max_size=8)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


# -- safetensors ---------------------------------------------------------------------------------


def safetensors_split(data: bytes) -> tuple[dict[str, Any], bytes]:
    """(header JSON, tensor bytes) of a well-formed safetensors file."""
    size = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + size]), data[8 + size:]


def safetensors_join(header: dict[str, Any] | str | bytes, body: bytes, length: int | None = None) -> bytes:
    """A safetensors file from a header (dict, or raw text for malformed JSON) and a body; ``length`` forges
    the 8-byte header length."""
    if isinstance(header, dict):
        header = json.dumps(header, allow_nan=True)
    raw = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(raw) if length is None else length % 2**64) + raw + body


def with_metadata(data: bytes, **changes: str | None) -> bytes:
    """A safetensors file whose __metadata__ entries are replaced (None removes one)."""
    header, body = safetensors_split(data)
    metadata = dict(header.get("__metadata__", {}))
    for key, value in changes.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    header["__metadata__"] = metadata
    return safetensors_join(header, body)


# -- the paper's .net ---------------------------------------------------------------------------

NET_LAYERS = 26
CODEBOOK_BYTES = 4 * 256


def net_counts(data: bytes) -> list[int]:
    return list(struct.unpack(f"<{NET_LAYERS}I", data[: 4 * NET_LAYERS]))


def net_layer_offsets(data: bytes, bias_sizes: Sequence[int]) -> list[int]:
    """Where each layer's codebook starts (bias sizes = out channels in file order)."""
    offset, starts = 4 * NET_LAYERS, []
    for stored, out_channels in zip(net_counts(data), bias_sizes, strict=True):
        starts.append(offset)
        offset += CODEBOOK_BYTES + 4 * out_channels + stored + (stored + 1) // 2
    return starts
