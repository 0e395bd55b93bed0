"""The .sqz container and the paper's .net layout: exact round trips, sq.load, and damaged or forged files."""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import squeezenet as sq
from squeezenet import WeightsError
from squeezenet.compress import CompressionError, sqz
from squeezenet.compress.prune import prune
from squeezenet.compress.quantize import share_weights
from squeezenet.weights import deep_compression as dc
from squeezenet.weights import sqz as sqz_reader
from squeezenet.weights.io import detect_format

from .conftest import shared_path, tiny_model

DC_FILE = "weights/deep_compression_v1.0/compressed_SqueezeNet.net"


def small_model(seed: int = 0) -> sq.SqueezeNet:
    """The tiny test network with non-zero biases, so every stored stream is exercised."""
    model = tiny_model(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)  # non-zero biases too
    return model


@pytest.fixture(scope="module")
def compressed() -> tuple[sq.SqueezeNet, dict]:
    model = small_model()
    masks = prune(model, {"conv1": 1.0, "fire*.squeeze": 0.9, "fire*.expand*": 0.3, "conv10": 0.05})
    return model, share_weights(model, {"*": 5, "conv10": 3}, masks)


@pytest.mark.parametrize("encoding", [
    sqz.Encoding(),
    sqz.Encoding(layout="sparse", gap_bits=4),
    sqz.Encoding(layout="sparse", gap_bits=1, huffman=True),
    sqz.Encoding(layout="dense", huffman=True),
    sqz.Encoding(gap_bits="auto", huffman=True),
])
def test_every_layout_round_trips_exactly(compressed: tuple[sq.SqueezeNet, dict], encoding: sqz.Encoding) -> None:
    model, shared = compressed
    data, size = sqz.encode_sqz(model, shared, encoding, {"note": "test"})
    assert size.total == len(data)
    contents = sqz_reader.decode_sqz(data)
    assert contents.spec == model.spec and contents.metadata == {"note": "test"}
    assert contents.preprocessing == model.preprocess
    for name, tensor in model.state_dict().items():
        assert torch.equal(contents.state_dict[name], tensor), name
    for name, layer in shared.items():
        assert np.array_equal(contents.shared[name].codes, layer.codes)


def test_auto_layout_is_never_larger_and_huffman_helps(compressed: tuple[sq.SqueezeNet, dict]) -> None:
    model, shared = compressed
    body = {encoding: sqz.encode_sqz(model, shared, encoding)[1] for encoding in (
        sqz.Encoding(layout="sparse"), sqz.Encoding(layout="dense"), sqz.Encoding(),
        sqz.Encoding(huffman=True), sqz.Encoding(huffman=True, gap_bits="auto"))}
    values = [size.total - size.header for size in body.values()]
    assert values[2] <= min(values[0], values[1])
    assert values[4] <= values[3] <= values[2]  # Huffman only where it is smaller, stream by stream


def test_float16_codebooks_and_biases_are_smaller_and_close(compressed: tuple[sq.SqueezeNet, dict]) -> None:
    model, shared = compressed
    full, _ = sqz.encode_sqz(model, shared)
    half, _ = sqz.encode_sqz(model, shared, sqz.Encoding(codebook_dtype="float16", raw_dtype="float16"))
    assert len(half) < len(full)
    contents = sqz_reader.decode_sqz(half)
    for name, tensor in model.state_dict().items():
        assert torch.allclose(contents.state_dict[name], tensor, rtol=1e-3, atol=1e-5), name


def test_sq_load_reads_sqz_by_content(tmp_path: Path, compressed: tuple[sq.SqueezeNet, dict]) -> None:
    model, shared = compressed
    path = tmp_path / "model.weights"  # no telling extension: the magic bytes decide
    sqz.write_sqz(path, model, shared, sqz.Encoding(huffman=True))
    assert detect_format(path) == "sqz"
    loaded = sq.load(path)
    assert loaded.spec == model.spec and loaded.preprocess == model.preprocess and not loaded.training
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    with pytest.raises(WeightsError, match="holds weights for architecture 'tiny', not '1_1'"):
        sq.load(path, arch="1_1")


def test_net_writer_reproduces_the_released_file_byte_for_byte() -> None:
    released = shared_path(DC_FILE).read_bytes()
    model = sq.load(shared_path(DC_FILE))
    biases = [tensor.shape[0] for name, tensor in model.state_dict().items() if name.endswith(".bias")]
    shared = sqz.shared_from_net(dc.parse(released, biases), model)  # dense 8-bit codes: gaps and fillers dropped
    assert sum(layer.kept for layer in shared.values()) == 415_921
    data, size = sqz.encode_net(model, shared)  # gaps and fillers rebuilt by weights.deep_compression
    assert data == released and size.total == len(released)


def test_net_layout_needs_8_bit_codes(compressed: tuple[sq.SqueezeNet, dict]) -> None:
    model, shared = compressed
    layer = shared["conv1"]
    shared = {**shared, "conv1": type(layer)(layer.name, layer.shape, 9, np.zeros(300, np.float32), layer.codes)}
    with pytest.raises(CompressionError, match="8-bit codes"):
        sqz.encode_net(model, shared)


# -- damaged and forged files ------------------------------------------------------


def reheader(data: bytes, change: Callable[[dict], None]) -> bytes:
    """The same body under an edited header."""
    length = int.from_bytes(data[4:8], "little")
    header = json.loads(zlib.decompress(data[8:8 + length]))
    change(header)
    packed = zlib.compress(json.dumps(header).encode())
    return sqz_reader.MAGIC + struct.pack("<I", len(packed)) + packed + data[8 + length:]


def first_shared(header: dict) -> dict:
    return next(entry for entry in header["tensors"] if entry["kind"] == "shared" and entry["layout"] == "sparse")


def _set(entry_of: Callable[[dict], dict], key: str, value: object) -> Callable[[dict], None]:
    return lambda header: entry_of(header).__setitem__(key, value)


FORGERIES = {
    "entries past the layer": (_set(first_shared, "entries", 10**12), "entries must be an integer from 0 to"),
    "codes bytes too large": (_set(first_shared, "codes_bytes", 10**9), "codes_bytes must be an integer"),
    "codes bytes wrong": (lambda h: first_shared(h).__setitem__("codes_bytes", first_shared(h)["codes_bytes"] + 1),
                          "take .* bytes, the header says"),
    "bits out of range": (_set(first_shared, "bits", 40), "bits must be an integer from 1 to 8"),
    "unknown layout": (_set(first_shared, "layout", "zigzag"), "unknown layout"),
    "huge spec": (lambda h: h["spec"].__setitem__("num_classes", 10**8),
                  "num_classes must be an integer from 1 to 100,000"),
    "bad spec": (lambda h: h["spec"].__setitem__("conv1_kernel", -3), "bad spec in header"),
    "endless fires": (lambda h: h["spec"].__setitem__("fires", {"metaparameters": {"num_fires": 10**9}}),
                      "1,000,000,000 Fire modules"),
    "odd fires": (lambda h: h["spec"].__setitem__("fires", {"metaparameters": 5}), "bad spec in header"),
    "missing tensor": (lambda h: h["tensors"].pop(), "no tensor 'classifier.conv10.bias'"),
    "repeated tensor": (lambda h: h["tensors"].__setitem__(-1, h["tensors"][-2]), "no tensor 'classifier.conv10.bias'"),
    "tensor listed twice": (lambda h: h["tensors"].append(h["tensors"][0]), "listed twice"),
    "wrong shape": (lambda h: h["tensors"][0].__setitem__("shape", [1, 2, 3, 4]), "has shape"),
    "newer version": (lambda h: h.__setitem__("version", 99), "version 99 is not supported"),
    "bad metadata": (lambda h: h.__setitem__("metadata", {"a": 1}), "metadata must map strings"),
}


@pytest.fixture(scope="module")
def good_file(compressed: tuple[sq.SqueezeNet, dict]) -> bytes:
    model, shared = compressed
    return sqz.encode_sqz(model, shared, sqz.Encoding(layout="sparse", gap_bits=3))[0]


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_forged_headers_give_one_line_errors_fast(tmp_path: Path, good_file: bytes, forgery: str) -> None:
    change, message = FORGERIES[forgery]
    path = tmp_path / "forged.sqz"
    path.write_bytes(reheader(good_file, change))
    start = time.perf_counter()
    with pytest.raises(WeightsError, match=message) as caught:
        sq.load(path)
    assert time.perf_counter() - start < 5
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_forged_gaps_past_the_end_and_codes_past_the_codebook(compressed: tuple[sq.SqueezeNet, dict]) -> None:
    model, shared = compressed
    layer = shared["conv10"]
    layer_past = type(layer)(layer.name, layer.shape, layer.bits, layer.codebook, layer.codes.copy())
    data, _ = sqz.encode_sqz(model, {**shared, "conv10": layer_past}, sqz.Encoding(layout="sparse", gap_bits=8))
    # the last body bytes are conv10's gaps (8 bits each), then conv10's bias: make the last gap huge
    bias_bytes = 4 * model.spec.num_classes
    forged = bytearray(data)
    forged[-bias_bytes - 1] = 255
    with pytest.raises(WeightsError, match="past the end of"):
        sqz_reader.decode_sqz(bytes(forged), "f.sqz")
    forged_codes = type(layer)(layer.name, layer.shape, layer.bits, layer.codebook[:2], layer.codes)  # codes up to 7
    data, _ = sqz.encode_sqz(model, {**shared, "conv10": forged_codes}, sqz.Encoding(layout="dense"))
    with pytest.raises(WeightsError, match="is past the codebook of 1 values"):
        sqz_reader.decode_sqz(data, "f.sqz")


@pytest.mark.parametrize(("name", "change", "message"), [
    ("empty", lambda d: b"", "truncated .sqz file"),
    ("magic", lambda d: b"XXXX" + d[4:], "not a .sqz file"),
    ("absurd header", lambda d: d[:4] + struct.pack("<I", 2**31) + d[8:], "header of 2,147,483,648 bytes"),
    ("header past end", lambda d: d[:4] + struct.pack("<I", len(d)) + d[8:], "larger than the file"),
    ("corrupt header", lambda d: d[:10] + bytes(20) + d[30:], "header"),
    ("truncated body", lambda d: d[:-7], "remain \\(truncated\\)"),
    ("trailing bytes", lambda d: d + b"\x00", "1 bytes left after the last tensor"),
])
def test_damaged_files_give_one_line_errors(tmp_path: Path, good_file: bytes, name: str, change, message) -> None:
    path = tmp_path / "damaged.sqz"
    path.write_bytes(change(good_file))
    with pytest.raises(WeightsError, match=message) as caught:
        sq.load(path)
    assert "\n" not in str(caught.value)


def test_every_truncation_fails_cleanly(good_file: bytes) -> None:
    for cut in np.linspace(0, len(good_file) - 1, 40).astype(int):
        with pytest.raises(WeightsError):
            sqz_reader.decode_sqz(good_file[:cut], "cut.sqz")


def test_a_header_that_inflates_past_the_limit_is_refused(tmp_path: Path) -> None:
    bomb = zlib.compress(b" " * (sqz_reader.MAX_HEADER_TEXT + 1), 9)  # about 16 KB that inflate to 16 MB
    path = tmp_path / "bomb.sqz"
    path.write_bytes(sqz_reader.MAGIC + struct.pack("<I", len(bomb)) + bomb)
    with pytest.raises(WeightsError, match="expands past"):
        sq.load(path)
