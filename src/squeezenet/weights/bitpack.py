"""Fixed-width unsigned integers packed into bytes, most significant bit first (codes, gaps, code lengths).

Both directions live here, below the .sqz reader that unpacks them; compress packs with the same functions.
"""

from __future__ import annotations

import numpy as np


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Fixed-width unsigned values, most significant bit first (any width 1..16)."""
    values = np.asarray(values, dtype=np.int64)
    if values.size == 0:
        return b""
    shifts = np.arange(bits - 1, -1, -1)
    return np.packbits(((values[:, None] >> shifts[None, :]) & 1).astype(np.uint8).reshape(-1)).tobytes()


def unpack_bits(data: bytes, count: int, bits: int) -> np.ndarray:
    """Inverse of pack_bits; the caller has checked that ``data`` holds ``count * bits`` bits."""
    raw = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * bits].reshape(count, bits).astype(np.int64)
    return raw @ (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))


def packed_size(count: int, bits: int) -> int:
    """Bytes that ``count`` values of ``bits`` bits take."""
    return (count * bits + 7) // 8
