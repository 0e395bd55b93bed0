"""Deep Compression's codings: Huffman codes, fixed-width packing and relative indices with fillers."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from squeezenet import WeightsError
from squeezenet.compress import huffman
from squeezenet.weights import huffman as huffman_decoder
from squeezenet.weights.bitpack import pack_bits, packed_size, unpack_bits
from squeezenet.weights.deep_compression import encode_positions, positions


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 63), max_size=300), st.integers(1, 64))
def test_huffman_round_trips_any_symbols(values: list[int], extra: int) -> None:
    alphabet = max(values, default=0) + extra
    symbols = np.array(values, dtype=np.int64)
    lengths = huffman.code_lengths(np.bincount(symbols, minlength=alphabet))
    data = huffman.encode(symbols, lengths)
    assert len(data) == (huffman.encoded_bits(symbols, lengths) + 7) // 8
    assert huffman_decoder.decode(data, lengths, len(symbols), "test").tolist() == values


def test_huffman_is_optimal_and_close_to_entropy_on_a_skewed_source() -> None:
    rng = np.random.default_rng(0)
    symbols = np.minimum(rng.geometric(0.3, 20_000) - 1, 31)
    counts = np.bincount(symbols, minlength=32)
    lengths = huffman.code_lengths(counts)
    probabilities = counts[counts > 0] / counts.sum()
    entropy = -(probabilities * np.log2(probabilities)).sum() * len(symbols)
    bits = huffman.encoded_bits(symbols, lengths)
    assert entropy <= bits <= entropy + len(symbols)  # within one bit per symbol of the entropy
    assert bits < 5 * len(symbols)  # far below the fixed 5-bit code


def test_code_lengths_are_limited_to_15_bits_and_stay_a_prefix_code() -> None:
    fibonacci = [1, 1]
    while len(fibonacci) < 40:
        fibonacci.append(fibonacci[-1] + fibonacci[-2])
    lengths = huffman.code_lengths(np.array(fibonacci))  # unlimited Huffman would need 39 bits
    assert lengths.max() == huffman_decoder.MAX_LENGTH and lengths.min() >= 1
    assert (2.0 ** -lengths.astype(float)).sum() <= 1.0
    huffman_decoder.check_lengths(lengths, "test")


def test_a_single_symbol_gets_one_bit() -> None:
    lengths = huffman.code_lengths(np.array([0, 0, 7]))
    assert lengths.tolist() == [0, 0, 1]
    assert huffman_decoder.decode(huffman.encode(np.full(7, 2), lengths), lengths, 7, "x").tolist() == [2] * 7


@pytest.mark.parametrize(("lengths", "data", "count", "message"), [
    ([1, 1, 1], b"\x00", 1, "do not form a prefix code"),
    ([16, 1], b"\x00", 1, "length above 15"),
    ([1, 1], b"\x00", 9, "cannot fit in 1 bytes"),
    ([2, 2, 0, 0], b"\xff", 1, "invalid Huffman code"),
    ([1, 2, 2], b"\xff", 5, "ends after 4 of 5 symbols"),
    ([0, 0], b"\x00", 1, "Huffman code is empty"),
])
def test_bad_huffman_streams_fail_clearly(lengths: list[int], data: bytes, count: int, message: str) -> None:
    with pytest.raises(WeightsError, match=message):
        huffman_decoder.decode(data, np.array(lengths), count, "stream")


def test_decoding_a_forged_count_is_bounded_by_the_stream() -> None:
    lengths = np.array([1, 1])
    start = time.perf_counter()
    with pytest.raises(WeightsError, match="cannot fit"):
        huffman_decoder.decode(b"\x00" * 10, lengths, 2**40, "forged")
    assert time.perf_counter() - start < 1


@given(st.integers(1, 16).flatmap(lambda bits: st.tuples(
    st.just(bits), st.lists(st.integers(0, 2**bits - 1), max_size=50))))
def test_fixed_width_packing_round_trips(case: tuple[int, list[int]]) -> None:
    bits, values = case
    packed = pack_bits(np.array(values, dtype=np.int64), bits)
    assert len(packed) == packed_size(len(values), bits)
    assert unpack_bits(packed, len(values), bits).tolist() == values


@settings(max_examples=60, deadline=None)
@given(st.sets(st.integers(0, 2000), max_size=100), st.integers(1, 8))
def test_relative_indices_round_trip_with_greedy_fillers(kept: set[int], gap_bits: int) -> None:
    where = np.array(sorted(kept), dtype=np.int64)
    gaps, real = encode_positions(where, gap_bits)
    assert gaps.max(initial=0) < 2**gap_bits
    stored = positions(gaps)
    assert stored[real].tolist() == where.tolist()
    skipped = np.diff(where, prepend=-1) - 1
    assert len(gaps) - len(where) == int((skipped // 2**gap_bits).sum())  # one filler per full stride of zeros
    fillers = np.setdiff1d(np.arange(len(gaps)), real)
    assert (gaps[fillers] == 2**gap_bits - 1).all()


def test_fillers_bridge_long_runs_as_in_the_paper() -> None:
    gaps, real = encode_positions(np.array([2, 40]), 4)
    # 37 zeros between 2 and 40: two fillers (16 positions each) then a gap of 5
    assert gaps.tolist() == [2, 15, 15, 5] and real.tolist() == [0, 3]
