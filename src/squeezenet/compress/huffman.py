"""Canonical, length-limited Huffman coding of small integer alphabets (codes and gaps).

Deep Compression's third stage. A code is described by one length per symbol
(0 for an absent symbol); canonical codewords follow from the lengths alone, so
a file stores only the lengths, packed as 4-bit nibbles (``MAX_LENGTH`` is 15).
Bits are packed most significant first. Decoding is table-driven and bounded:
it reads exactly ``count`` symbols, each at least one bit, and fails with a
WeightsError on an invalid code or a stream that ends early.
"""

from __future__ import annotations

import heapq

import numpy as np

from ..errors import WeightsError

MAX_LENGTH = 15  # fits a nibble; decoding tables have 2**15 entries
_CHUNK_BITS = 1 << 20  # decode this many bit positions at a time


def code_lengths(counts: np.ndarray, max_length: int = MAX_LENGTH) -> np.ndarray:
    """Optimal prefix-code lengths for symbol ``counts``, limited to ``max_length`` bits.

    When the optimal code is too deep, counts are halved (keeping every used
    symbol at least 1) and the code rebuilt: a little longer on average, never wrong.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.ndim != 1 or (counts < 0).any():
        raise ValueError("counts must be a 1-D array of non-negative integers")
    if len(counts) > 2**max_length:
        raise ValueError(f"an alphabet of {len(counts)} symbols cannot have codes of at most {max_length} bits")
    used = np.flatnonzero(counts)
    lengths = np.zeros(len(counts), dtype=np.uint8)
    if len(used) == 0:
        return lengths
    if len(used) == 1:
        lengths[used[0]] = 1
        return lengths
    weights = counts[used].copy()
    while True:
        depth = _huffman_depths(weights)
        if depth.max() <= max_length:
            lengths[used] = depth
            return lengths
        weights = np.maximum(weights // 2, 1)


def _huffman_depths(weights: np.ndarray) -> np.ndarray:
    """Depth of each leaf in a Huffman tree over ``weights`` (ties broken by symbol order, so deterministic)."""
    heap: list[tuple[int, int, int]] = [(int(w), i, i) for i, w in enumerate(weights)]
    heapq.heapify(heap)
    parent: list[int] = [-1] * len(weights)
    next_node = len(weights)
    while len(heap) > 1:
        weight_a, _, node_a = heapq.heappop(heap)
        weight_b, _, node_b = heapq.heappop(heap)
        parent.extend([-1])
        parent[node_a] = parent[node_b] = next_node
        heapq.heappush(heap, (weight_a + weight_b, next_node, next_node))
        next_node += 1
    depth = [0] * len(parent)
    for node in range(len(parent) - 2, -1, -1):  # parents are created after their children
        depth[node] = depth[parent[node]] + 1
    return np.asarray(depth[: len(weights)], dtype=np.uint8)


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical codewords: shorter codes first, then by symbol; each as an integer of its length in bits."""
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = np.zeros(len(lengths), dtype=np.int64)
    code = 0
    previous = 0
    for symbol in sorted(np.flatnonzero(lengths), key=lambda s: (lengths[s], s)):
        code <<= int(lengths[symbol]) - previous
        previous = int(lengths[symbol])
        codes[symbol] = code
        code += 1
    return codes


def check_lengths(lengths: np.ndarray, source: str) -> None:
    """Lengths read from a file must describe a prefix code (Kraft sum at most 1)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if (lengths > MAX_LENGTH).any():
        raise WeightsError(f"{source}: Huffman code length above {MAX_LENGTH}")
    used = lengths[lengths > 0]
    if (2.0 ** (MAX_LENGTH - used)).sum() > 2.0**MAX_LENGTH:
        raise WeightsError(f"{source}: Huffman code lengths do not form a prefix code")


def encoded_bits(symbols: np.ndarray, lengths: np.ndarray) -> int:
    """Size in bits of ``symbols`` under ``lengths`` (to choose an encoding without encoding)."""
    return int(np.bincount(np.asarray(symbols, dtype=np.int64), minlength=len(lengths)) @ lengths.astype(np.int64))


def encode(symbols: np.ndarray, lengths: np.ndarray) -> bytes:
    """Pack the codewords of ``symbols`` most significant bit first, padding the last byte with zeros."""
    symbols = np.asarray(symbols, dtype=np.int64)
    if symbols.size == 0:
        return b""
    lengths = np.asarray(lengths, dtype=np.int64)
    if (lengths[symbols] == 0).any():
        raise ValueError("a symbol to encode has no codeword")
    codes = canonical_codes(lengths)
    word, size = codes[symbols], lengths[symbols]
    width = int(size.max())
    shifts = size[:, None] - 1 - np.arange(width)[None, :]
    bits = (word[:, None] >> np.maximum(shifts, 0)) & 1
    return np.packbits(bits[shifts >= 0].astype(np.uint8)).tobytes()


def decode(data: bytes, lengths: np.ndarray, count: int, source: str) -> np.ndarray:
    """Exactly ``count`` symbols from ``data``; WeightsError if the stream is short or holds an invalid code."""
    lengths = np.asarray(lengths, dtype=np.int64)
    check_lengths(lengths, source)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if count > 8 * len(data):
        raise WeightsError(f"{source}: {count} symbols cannot fit in {len(data)} bytes of Huffman code")
    if not lengths.any():
        raise WeightsError(f"{source}: {count} symbols to decode but the Huffman code is empty")
    # A table from every MAX_LENGTH-bit window to (symbol, length) of the codeword it starts with.
    codes = canonical_codes(lengths)
    table_symbol = np.zeros(2**MAX_LENGTH, dtype=np.int64)
    table_length = np.zeros(2**MAX_LENGTH, dtype=np.int64)
    for symbol in np.flatnonzero(lengths):
        span = 1 << (MAX_LENGTH - int(lengths[symbol]))
        start = int(codes[symbol]) * span
        table_symbol[start:start + span] = symbol
        table_length[start:start + span] = lengths[symbol]
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    total_bits = len(bits)
    symbols: list[int] = []
    position = 0
    # The window at every bit position of a chunk, then a walk from codeword to codeword (memory stays bounded).
    for chunk_start in range(0, total_bits, _CHUNK_BITS):
        chunk_end = min(chunk_start + _CHUNK_BITS, total_bits)
        if position >= chunk_end:
            continue
        ahead = bits[chunk_start:chunk_end + MAX_LENGTH].astype(np.int32)
        ahead = np.concatenate([ahead, np.zeros(chunk_end - chunk_start + MAX_LENGTH - len(ahead), np.int32)])
        windows = np.zeros(chunk_end - chunk_start, dtype=np.int32)
        for offset in range(MAX_LENGTH):
            windows = (windows << 1) | ahead[offset:offset + chunk_end - chunk_start]
        step = table_length[windows].tolist()
        symbol_at = table_symbol[windows].tolist()
        while position < chunk_end and len(symbols) < count:
            length = step[position - chunk_start]
            if length == 0:
                raise WeightsError(f"{source}: invalid Huffman code at bit {position}")
            symbols.append(symbol_at[position - chunk_start])
            position += length
        if len(symbols) == count:
            break
    if len(symbols) < count or position > total_bits:
        raise WeightsError(f"{source}: Huffman stream ends after {len(symbols)} of {count} symbols")
    return np.asarray(symbols, dtype=np.int64)
