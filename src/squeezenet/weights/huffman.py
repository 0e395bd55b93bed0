"""Canonical Huffman codes, the decoding half: what a reader of ``.sqz`` files needs (the encoder is in compress).

A code is described by one length per symbol (0 for an absent symbol);
canonical codewords follow from the lengths alone, so a file stores only the
lengths, packed as 4-bit nibbles (``MAX_LENGTH`` is 15). Bits are packed most
significant first. Decoding is table-driven and bounded: it reads exactly
``count`` symbols, each at least one bit, and fails with a WeightsError on an
invalid code or a stream that ends early.
"""

from __future__ import annotations

import numpy as np

from ..errors import WeightsError

MAX_LENGTH = 15  # fits a nibble; decoding tables have 2**15 entries
_CHUNK_BITS = 1 << 20  # decode this many bit positions at a time


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
