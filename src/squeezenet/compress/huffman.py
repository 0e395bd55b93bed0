"""Canonical, length-limited Huffman coding of small integer alphabets (codes and gaps): the encoding half.

Deep Compression's third stage. The code is fixed by one length per symbol,
limited to ``MAX_LENGTH`` bits so the lengths fit the 4-bit table a ``.sqz``
file stores; codewords are canonical, so the decoder in ``weights.huffman``
rebuilds them from the lengths alone.
"""

from __future__ import annotations

import heapq

import numpy as np

from ..weights.huffman import MAX_LENGTH, canonical_codes


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
