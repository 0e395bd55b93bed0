"""The paper's Deep Compression file: byte layout, exact round trip, decoding, and forged or damaged files."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import squeezenet as sq
from squeezenet import WeightsError
from squeezenet.weights import deep_compression as dc
from squeezenet.weights.caffe import release_spec
from squeezenet.weights.names import layer_names

from .conftest import shared_path

DC_FILE = "weights/deep_compression_v1.0/compressed_SqueezeNet.net"


@pytest.fixture(scope="module")
def dc_bytes() -> bytes:
    return shared_path(DC_FILE).read_bytes()


@pytest.fixture(scope="module")
def shapes() -> list[tuple[int, ...]]:
    spec = release_spec(sq.get_spec("1_0"))
    state = sq.build(spec).state_dict()
    return [tuple(state[f"{row.module}.weight"].shape) for row in layer_names(spec)]


def test_layer_names_follow_the_files_prototxt() -> None:
    names = [row.deep_compression for row in layer_names(sq.get_spec("1_0"))]
    prototxt = shared_path("weights/deep_compression_v1.0/SqueezeNet_deploy.prototxt").read_text()
    assert names[:4] == ["conv1", "fire2/conv1x1_1", "fire2/conv1x1_2", "fire2/conv3x3_2"]
    assert names[-1] == "conv_final" and len(names) == 26
    assert all(f'name: "{name}"' in prototxt for name in names)


def test_real_file_parses_into_26_layers_and_serialises_back_byte_for_byte(
        dc_bytes: bytes, shapes: list[tuple[int, ...]]) -> None:
    layers = dc.parse(dc_bytes, [shape[0] for shape in shapes])
    assert len(layers) == 26
    assert all(layer.codebook[0] == 0.0 and len(layer.codebook) == 256 for layer in layers)
    assert all(int(layer.gaps.max()) <= 15 for layer in layers)
    assert dc.serialize(layers) == dc_bytes


def test_decoded_file_is_a_dense_pruned_v10(dc_bytes: bytes, shapes: list[tuple[int, ...]]) -> None:
    decoded = dc.decode(dc_bytes, shapes)
    assert sum(weight.size + bias.size for weight, bias in decoded) == 1_248_424
    nonzero = sum(int(np.count_nonzero(weight)) for weight, _ in decoded)
    assert 400_000 < nonzero < 430_000  # FORMAT.md: about 416k non-zero weights
    assert all(weight.shape == shape for (weight, _), shape in zip(decoded, shapes, strict=True))
    # 8-bit weight sharing: each layer uses at most 256 distinct values
    assert all(len(np.unique(weight)) <= 256 for weight, _ in decoded)


def test_load_gives_v10_with_caffes_conv10_pad(dc_bytes: bytes) -> None:
    model = sq.load(shared_path(DC_FILE))
    assert model.spec.name == "1_0" and model.spec.conv10_padding == 1
    assert model.preprocess == sq.get_preprocessing("caffe")
    assert not model.training


def test_positions_follow_the_gap_rule() -> None:
    layer = dc.CompressedLayer(np.arange(256, dtype=np.float32), np.zeros(1, np.float32),
                               np.array([5, 0, 7], np.uint8), np.array([2, 15, 0], np.uint8))
    assert dc.positions(layer.gaps).tolist() == [2, 18, 19]
    dense = dc.decode_layer(layer, (1, 20, 1, 1)).ravel()
    assert dense[2] == 5 and dense[18] == 0 and dense[19] == 7 and np.count_nonzero(dense) == 2


@given(st.lists(st.integers(0, 15), max_size=41))
def test_nibble_packing_round_trips(values: list[int]) -> None:
    array = np.array(values, dtype=np.uint8)
    packed = dc.pack_nibbles(array)
    assert len(packed) == (len(values) - 1) // 2 + 1 if values else len(packed) == 0
    assert dc.unpack_nibbles(packed, len(values)).tolist() == values


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_forged_counts_fail_fast_without_allocating(tmp_path: Path, dc_bytes: bytes) -> None:
    forged = np.frombuffer(dc_bytes, dtype="<u4", count=26).copy()
    forged[3] = 2**32 - 1
    path = write(tmp_path, "forged.net", forged.tobytes() + dc_bytes[104:])
    start = time.perf_counter()
    with pytest.raises(WeightsError, match=r"forged\.net.*layer 3 needs .* bytes \(nz=4,294,967,295\) but only"):
        sq.load(path)
    assert time.perf_counter() - start < 5


def test_gaps_reaching_past_the_layer_are_refused() -> None:
    layer = dc.CompressedLayer(np.zeros(256, np.float32), np.zeros(1, np.float32),
                               np.zeros(4, np.uint8), np.full(4, 15, np.uint8))
    with pytest.raises(WeightsError, match="reach position 63 but the layer has only 9 weights"):
        dc.decode_layer(layer, (1, 1, 3, 3))


@pytest.mark.parametrize(("name", "change"), [
    ("truncated.net", lambda data: data[:-1000]),
    ("header_only.net", lambda data: data[:50]),
    ("trailing.net", lambda data: data + b"\x00"),
    ("empty.net", lambda data: b""),
])
def test_damaged_files_give_one_line_errors(tmp_path: Path, dc_bytes: bytes, name: str, change) -> None:
    path = write(tmp_path, name, change(dc_bytes))
    with pytest.raises(WeightsError) as caught:
        sq.load(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and "\n" not in message, message


def test_other_architecture_is_refused_by_name(dc_bytes: bytes) -> None:
    with pytest.raises(WeightsError, match=r"compressed_SqueezeNet\.net.*architecture '1_1'"):
        sq.load(shared_path(DC_FILE), arch="1_1")
