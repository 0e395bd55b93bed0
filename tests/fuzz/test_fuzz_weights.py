"""Every weights reader against mutations of real files: truncated, bit-flipped, forged, shuffled.

The inputs are the real Caffe release and the paper's Deep Compression file from ../shared, and our
own safetensors, a torchvision ``.pth`` and a ``.sqz`` made from models built here. Each input must
end in a one-line error naming the file, or load into a model whose weights differ from the original
only where the mutation touched them (see harness.judge for the failure kinds: crash, hang, memory).
"""

from __future__ import annotations

import io
import json
import math
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import squeezenet as sq
from squeezenet.preprocess import MAX_SIDE
from squeezenet.weights.caffe import message_class
from squeezenet.weights.names import layer_names
from squeezenet.weights.torchvision import to_torchvision

from ..conftest import shared_path, tiny_model
from . import mutate
from .harness import check, check_all, fuzz_settings

CAFFE_FILE = "weights/caffe_v1.1/squeezenet_v1.1.caffemodel"
NET_FILE = "weights/deep_compression_v1.0/compressed_SqueezeNet.net"




def changed_values(reference: dict[str, torch.Tensor], model: object) -> int | str:
    """How many weights differ bitwise from ``reference`` (as float32), or why the model cannot be compared."""
    if not isinstance(model, sq.SqueezeNet) or model.training:
        return f"returned {type(model).__name__} (training={getattr(model, 'training', None)}), not an eval model"
    state = model.state_dict()
    if list(state) != list(reference) or any(state[k].shape != reference[k].shape for k in state):
        return f"returned architecture {model.spec.name!r} with other tensors than the original"
    changed = 0
    for key, tensor in state.items():  # numpy on raw bits: fast, and NaN compares equal to the same NaN
        ours = tensor.detach().float().numpy().view(np.int32)
        changed += int(np.count_nonzero(ours != reference[key].detach().float().numpy().view(np.int32)))
    return changed


def at_most_changed(reference: dict[str, torch.Tensor], limit: int) -> Callable[[object], str | None]:
    """Accept a loaded model only if at most ``limit`` weights differ: a flipped bit alters one value at most."""
    def accept(model: object) -> str | None:
        changed = changed_values(reference, model)
        if isinstance(changed, str):
            return changed
        return None if changed <= limit else f"{changed} weights differ but the mutation touched at most {limit}"
    return accept


# -- Caffe .caffemodel (real, 4.9 MB) -------------------------------------------------------------


@pytest.fixture(scope="module")
def caffe_file() -> tuple[bytes, dict[str, torch.Tensor]]:
    path = shared_path(CAFFE_FILE)
    return path.read_bytes(), sq.load(path).state_dict()


def test_caffemodel_truncated_at_layer_boundaries_and_anywhere(tmp_path: Path, caffe_file) -> None:
    data, _ = caffe_file
    landmarks = [data.find(name.encode()) for name in ("conv1", "fire2/squeeze1x1", "fire9/expand3x3", "conv10")]
    cuts = mutate.truncation_offsets(len(data), 16, seed=1, landmarks=landmarks)
    check_all("caffemodel", [(f"cut{cut}", data[:cut]) for cut in cuts], tmp_path, ".caffemodel", sq.load,
              refuse=True)


@fuzz_settings(short=10, long=400)
@given(flips=st.one_of(mutate.bit_flips(0, 8192), mutate.bit_flips(0, 4_947_340)))
def test_caffemodel_bit_flips(tmp_path: Path, caffe_file, flips: list[tuple[int, int]]) -> None:
    data, reference = caffe_file
    flips = [(offset % len(data), bit) for offset, bit in flips]
    mutated = mutate.flip_bits(data, flips)
    check("caffemodel", mutated, mutate.write_case(tmp_path, "flipped.caffemodel", mutated),
          lambda: sq.load(tmp_path / "flipped.caffemodel"), at_most_changed(reference, len(flips)))


def _caffe_variants() -> dict[str, tuple[Callable[[object], None], int]]:
    """Structural forgeries of the parsed NetParameter: (edit, weights that may legitimately change)."""
    def convs(net: object) -> list:
        return [layer for layer in net.layer if layer.blobs]

    def set_dims(index: int, dims: list[int]) -> Callable[[object], None]:
        def edit(net: object) -> None:
            shape = convs(net)[index].blobs[0].shape
            del shape.dim[:]
            shape.dim.extend(dims)
        return edit

    def legacy_shape(net: object) -> None:
        blob = convs(net)[0].blobs[0]
        dims = list(blob.shape.dim)
        blob.ClearField("shape")
        blob.num, blob.channels, blob.height, blob.width = dims

    def as_doubles(net: object) -> None:
        blob = convs(net)[0].blobs[1]
        values = list(blob.data)
        blob.ClearField("data")
        blob.double_data.extend(values)

    def swap_names(net: object) -> None:
        first, second = convs(net)[:2]
        first.name, second.name = second.name, first.name

    def drop_layer(net: object) -> None:
        del net.layer[[i for i, layer in enumerate(net.layer) if layer.blobs][5]]

    def set_pad(index: int, pads: list[int], pad_h: int | None = None) -> Callable[[object], None]:
        def edit(net: object) -> None:
            param = convs(net)[index].convolution_param
            del param.pad[:]
            param.pad.extend(pads)
            if pad_h is not None:
                param.pad_h, param.pad_w = pad_h, pad_h + 1
        return edit

    def set_type(kind: str) -> Callable[[object], None]:
        def edit(net: object) -> None:
            convs(net)[2].type = kind
        return edit

    def drop_blob(net: object) -> None:
        del convs(net)[3].blobs[1]

    def extra_layer(net: object) -> None:
        extra = net.layer.add()
        extra.CopyFrom(convs(net)[1])
        extra.name = "fire99/squeeze1x1"

    def duplicate_layer(net: object) -> None:
        net.layer.add().CopyFrom(convs(net)[4])

    def nan_value(net: object) -> None:
        convs(net)[0].blobs[1].data[0] = float("nan")

    def fewer_values(net: object) -> None:
        del convs(net)[-1].blobs[1].data[10:]

    def no_layers(net: object) -> None:
        del net.layer[:]

    def legacy_layers(net: object) -> None:  # the V1 "layers" field next to the modern one: both are read
        legacy = net.layers.add()
        legacy.name, legacy.type = "conv1", 4
        legacy.blobs.add().CopyFrom(convs(net)[0].blobs[0])

    return {
        "huge_dims": (set_dims(0, [2**62, 2**62]), 0), "negative_dim": (set_dims(0, [-1, 3, 3, 64]), 0),
        "zero_dim": (set_dims(0, [0]), 0), "no_dims": (set_dims(0, []), 0),
        "padded_with_1_dims": (set_dims(0, [1, 1, 64, 3, 3, 3]), 0), "legacy_shape": (legacy_shape, 0),
        "double_data": (as_doubles, 0), "swapped_names": (swap_names, 0), "dropped_layer": (drop_layer, 0),
        "unequal_pad": (set_pad(2, [], 1), 0), "huge_conv10_pad": (set_pad(-1, [10**6]), 0),
        "two_pads": (set_pad(-1, [1, 2]), 0), "inner_product": (set_type("InnerProduct"), 0),
        "one_blob": (drop_blob, 0), "extra_layer": (extra_layer, 0), "duplicate_layer": (duplicate_layer, 0),
        "nan_value": (nan_value, 1), "fewer_values": (fewer_values, 0), "no_layers": (no_layers, 0),
        "legacy_layer_too": (legacy_layers, 0),
    }


def test_caffemodel_forged_fields(tmp_path: Path, caffe_file) -> None:
    data, reference = caffe_file
    net_class = message_class("NetParameter")
    original = net_class()
    original.ParseFromString(data)
    variants = _caffe_variants()
    cases = []
    for name, (edit, _) in variants.items():
        net = net_class()
        net.CopyFrom(original)
        edit(net)
        cases.append((name, net.SerializeToString()))
    check_all("caffemodel", cases, tmp_path, ".caffemodel", sq.load,
              lambda name, model: at_most_changed(reference, variants[name][1])(model))


# -- the paper's Deep Compression .net (real, 660 KB) -------------------------------------------


@pytest.fixture(scope="module")
def net_file() -> tuple[bytes, dict[str, torch.Tensor], list[int]]:
    path = shared_path(NET_FILE)
    model = sq.load(path)
    state = model.state_dict()
    biases = [state[f"{row.module}.bias"].shape[0] for row in layer_names(model.spec) if row.deep_compression]
    return path.read_bytes(), state, biases


def a_squeezenet_1_0(name: str, model: object) -> str | None:
    """Any decoded .net is some SqueezeNet v1.0: the file holds no checksum, so flipped codes go unnoticed."""
    if not isinstance(model, sq.SqueezeNet) or model.spec.name != "1_0":
        return f"returned {getattr(getattr(model, 'spec', None), 'name', type(model).__name__)!r}, not 1_0"
    return None


def test_net_truncated_anywhere_is_refused(tmp_path: Path, net_file) -> None:
    data, _, biases = net_file
    starts = mutate.net_layer_offsets(data, biases)
    cuts = mutate.truncation_offsets(len(data), 16, seed=2, landmarks=[104, *starts[1:4], starts[-1]])
    check_all("net", [(f"cut{cut}", data[:cut]) for cut in cuts], tmp_path, ".net", sq.load, refuse=True)


@fuzz_settings(short=14, long=300)
@given(layer=st.integers(0, mutate.NET_LAYERS - 1), count=mutate.FORGED_COUNTS)
def test_net_forged_entry_counts_are_refused_without_allocating(tmp_path: Path, net_file, layer: int,
                                                               count: int) -> None:
    data, _, _ = net_file
    count %= 2**32
    if count == mutate.net_counts(data)[layer]:
        return
    forged = mutate.put_uint(data, 4 * layer, 4, count)  # the file size no longer adds up: always detectable
    check("net", forged, mutate.write_case(tmp_path, "forged.net", forged), lambda: sq.load(tmp_path / "forged.net"),
          refuse=True)


@fuzz_settings(short=10, long=300)
@given(data_=st.data())
def test_net_flipped_codes_gaps_and_codebooks(tmp_path: Path, net_file, data_: st.DataObject) -> None:
    data, _, biases = net_file
    starts = mutate.net_layer_offsets(data, biases)
    layer = data_.draw(st.integers(0, mutate.NET_LAYERS - 1), "layer")
    end = starts[layer + 1] if layer + 1 < len(starts) else len(data)
    flips = data_.draw(mutate.bit_flips(starts[layer], end), "flips")
    mutated = mutate.flip_bits(data, flips)
    check("net", mutated, mutate.write_case(tmp_path, "flipped.net", mutated),
          lambda: sq.load(tmp_path / "flipped.net"), lambda model: a_squeezenet_1_0("", model))


def test_net_swapped_and_hand_made(tmp_path: Path, net_file) -> None:
    data, _, biases = net_file
    starts = mutate.net_layer_offsets(data, biases)
    cases = [
        ("swapped_counts", mutate.swap(data, 0, 4, 4)),
        ("swapped_codebooks", mutate.swap(data, starts[1], starts[5], mutate.CODEBOOK_BYTES)),
        ("layers_reordered", data[:104] + data[starts[1]:starts[2]] + data[starts[0]:starts[1]] + data[starts[2]:]),
        ("one_byte_more", data + b"\0"), ("empty", b""), ("all_ones", b"\xff" * 4096),
        ("header_only", data[:104]),
        ("nan_codebook", data[:starts[0]] + b"\x00\x00\xc0\x7f" * 256 + data[starts[0] + 1024:]),
        ("gaps_all_15", data[:starts[3] - 200] + b"\xff" * 200 + data[starts[3]:]),
        ("doubled", data + data),
    ]
    check_all("net", cases, tmp_path, ".net", sq.load, a_squeezenet_1_0)


# -- our safetensors (weights + spec + preprocessing) ---------------------------------------------


@pytest.fixture(scope="module")
def safetensors_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, dict[str, torch.Tensor]]:
    model = tiny_model()
    path = tmp_path_factory.mktemp("safetensors") / "tiny.safetensors"
    sq.save(model, path, {"class_names": json.dumps([f"class {i}" for i in range(10)]), "epoch": "3"})
    return path.read_bytes(), model.state_dict()


def test_safetensors_truncated_or_with_forged_header_length(tmp_path: Path, safetensors_file) -> None:
    data, _ = safetensors_file
    header_end = 8 + struct.unpack("<Q", data[:8])[0]
    cuts = mutate.truncation_offsets(len(data), 12, seed=3, landmarks=[header_end])
    lengths = [0, 1, header_end - 9, header_end - 7, len(data), 2**31, 2**32 + header_end - 8, 2**63, 2**64 - 1,
               100_000_001]
    cases = [(f"cut{cut}", data[:cut]) for cut in cuts]
    cases += [(f"length{length}", mutate.put_uint(data, 0, 8, length)) for length in lengths]
    check_all("safetensors", cases, tmp_path, ".safetensors", sq.load, refuse=True)


def test_safetensors_forged_header_fields(tmp_path: Path, safetensors_file) -> None:
    data, reference = safetensors_file
    header, body = mutate.safetensors_split(data)
    first = next(key for key in header if key != "__metadata__")

    def edited(change: Callable[[dict], object]) -> bytes:
        copy = json.loads(json.dumps(header))
        change(copy)
        return mutate.safetensors_join(copy, body)

    forged = {
        "unknown_dtype": {"dtype": "Q8"}, "int_dtype": {"dtype": "I64"}, "bool_dtype": {"dtype": "BOOL"},
        "half_dtype": {"dtype": "F16"}, "huge_shape": {"shape": [2**40, 2**40]}, "negative_shape": {"shape": [-1]},
        "text_shape": {"shape": "abc"}, "scalar_shape": {"shape": []}, "huge_offsets": {"data_offsets": [0, 2**62]},
        "reversed_offsets": {"data_offsets": [64, 0]}, "float_offsets": {"data_offsets": [0.5, 1]},
        "shifted_offsets": {"data_offsets": [4, 4 + math.prod(header[first]["shape"]) * 4]},
    }
    cases = [(name, edited(lambda h, fields=fields: h[first].update(fields))) for name, fields in forged.items()]
    cases += [
        ("missing_tensor", edited(lambda h: h.pop(first))),
        ("renamed_tensor", edited(lambda h: h.update({"features.conv99.weight": h.pop(first)}))),
        ("metadata_not_text", edited(lambda h: h["__metadata__"].update(epoch=3))),
        ("metadata_list", edited(lambda h: h.update(__metadata__=[1]))),
        ("no_metadata", edited(lambda h: h.pop("__metadata__"))),
        ("duplicate_key", mutate.safetensors_join(json.dumps(header)[:-1] + f', "{first}": '
                                                  + json.dumps(header[first]) + "}", body)),
        ("not_json", mutate.safetensors_join("{" + "x" * 50, body)),
        ("deep_json", mutate.safetensors_join('{"a":' + "[" * 10000 + "]" * 10000 + "}", body)),
        ("bad_utf8", mutate.safetensors_join(b'{"\xff": 1}', body)),
        ("trailing_bytes", data + bytes(8)),
        ("header_only", mutate.safetensors_join(header, b"")),
    ]
    check_all("safetensors", cases, tmp_path, ".safetensors", sq.load,
              lambda name, model: at_most_changed(reference, 0)(model))


@fuzz_settings(short=14, long=400)
@given(data_=st.data())
def test_safetensors_bit_flips_in_header_and_body(tmp_path: Path, safetensors_file, data_: st.DataObject) -> None:
    data, reference = safetensors_file
    header_end = 8 + struct.unpack("<Q", data[:8])[0]
    flips = data_.draw(st.one_of(mutate.bit_flips(0, header_end), mutate.bit_flips(header_end, len(data))), "flips")
    mutated = mutate.flip_bits(data, flips)
    body_flips = sum(offset >= header_end for offset, _ in flips)
    check("safetensors", mutated, mutate.write_case(tmp_path, "flipped.safetensors", mutated),
          lambda: sq.load(tmp_path / "flipped.safetensors"), at_most_changed(reference, body_flips))


def _spec_with(data: bytes, **fields: object) -> str:
    spec = json.loads(mutate.safetensors_split(data)[0]["__metadata__"]["spec"])
    spec.update(fields)
    return json.dumps(spec)


def _metaparameters(**fields: object) -> dict:
    return {"metaparameters": {"base_e": 32, "incr_e": 32, "num_fires": 2, **fields}}


def test_safetensors_forged_spec_in_metadata(tmp_path: Path, safetensors_file) -> None:
    """A spec that would build a huge or endless network is refused before anything is allocated."""
    data, reference = safetensors_file
    specs = {
        "fires_1e9": _spec_with(data, fires=_metaparameters(num_fires=10**9)),
        "fires_1e5": _spec_with(data, fires=_metaparameters(num_fires=10**5)),
        "explicit_fires_1e4": _spec_with(data, fires=[[4, 8, 8]] * 10_000),
        "conv1_1e8": _spec_with(data, conv1_filters=10**8), "classes_1e9": _spec_with(data, num_classes=10**9),
        "classes_1e400": _spec_with(data, num_classes=10**400), "kernel_1e6": _spec_with(data, conv1_kernel=10**6),
        "conv1_pad_1e6": _spec_with(data, conv1_padding=10**6),
        "conv10_pad_1e6": _spec_with(data, conv10_padding=10**6),
        "pool_after_int": _spec_with(data, pool_after=5), "pool_after_nested": _spec_with(data, pool_after=[[1]]),
        "dropout_text": _spec_with(data, dropout="x"), "dropout_nan": _spec_with(data, dropout=float("nan")),
        "pct_text": _spec_with(data, fires=_metaparameters(pct_3x3="a")),
        "squeeze_inf": _spec_with(data, fires=_metaparameters(squeeze_ratio=float("inf"))),
        "squeeze_nan": _spec_with(data, fires=_metaparameters(squeeze_ratio=float("nan"))),
        "fires_text": _spec_with(data, fires="abc"), "fire_of_four": _spec_with(data, fires=[[1, 2, 3, 4]]),
        "name_list": _spec_with(data, name=[1]), "bypass_list": _spec_with(data, bypass=[1]),
        "unknown_field": _spec_with(data, colour="red"), "other_preset": sq.get_spec("1_1").to_json(),
        "deep_json": "[" * 100_000 + "]" * 100_000, "not_json": "{", "a_list": "[]", "empty": "",
        "in_channels_1": _spec_with(data, in_channels=1), "batch_norm": _spec_with(data, batch_norm=True),
        "complex_bypass": _spec_with(data, bypass="complex"),
    }
    cases = [(name, mutate.with_metadata(data, spec=text)) for name, text in specs.items()]
    cases += [("no_spec", mutate.with_metadata(data, spec=None)),
              ("newer_format", mutate.with_metadata(data, format_version="2")),
              ("other_format", mutate.with_metadata(data, format="other", format_version="9"))]
    check_all("safetensors", cases, tmp_path, ".safetensors", sq.load,
              lambda name, model: at_most_changed(reference, 0)(model))


@fuzz_settings(short=16, long=400)
@given(field=st.sampled_from(["name", "fires", "conv1_filters", "conv1_kernel", "conv1_stride", "conv1_padding",
                              "pool_after", "pool_kernel", "pool_stride", "num_classes", "in_channels", "dropout",
                              "conv10_padding", "bypass", "batch_norm", "allow_wide_squeeze"]),
       value=mutate.JSON_VALUES)
def test_safetensors_spec_fields_replaced_by_any_json(tmp_path: Path, safetensors_file, field: str,
                                                     value: object) -> None:
    data, reference = safetensors_file
    forged = mutate.with_metadata(data, spec=_spec_with(data, **{field: value}))
    check("safetensors", forged, mutate.write_case(tmp_path, "forged.safetensors", forged),
          lambda: sq.load(tmp_path / "forged.safetensors"), at_most_changed(reference, 0))


def usable_preprocessing(model: object) -> str | None:
    """A recipe read from a file must turn a real-sized image into a bounded, finite tensor."""
    recipe = getattr(model, "preprocess", None)
    if recipe is None:
        return None
    tensor = recipe(Image.new("RGB", (500, 375), (120, 60, 30)))
    finite = bool(torch.isfinite(tensor).all())
    if not finite or max(tensor.shape[-2:]) > 4 * MAX_SIDE:
        return f"preprocessing gave a tensor of shape {tuple(tensor.shape)} (finite: {finite})"
    return None


@fuzz_settings(short=12, long=300)
@given(field=st.sampled_from(["name", "resize", "resize_mode", "crop", "channel_order", "scale", "mean", "std",
                              "interpolation", "colour"]),
       value=st.one_of(mutate.JSON_VALUES, st.sampled_from([10**9, 4097, 1, [float("nan")] * 3,
                                                           [float("inf")] * 3, [0.0] * 3, [1.0] * 3])))
def test_safetensors_forged_preprocessing_in_metadata(tmp_path: Path, safetensors_file, field: str,
                                                      value: object) -> None:
    data, _ = safetensors_file
    recipe = json.loads(mutate.safetensors_split(data)[0]["__metadata__"]["preprocessing"])
    recipe[field] = value
    forged = mutate.with_metadata(data, preprocessing=json.dumps(recipe))
    check("safetensors", forged, mutate.write_case(tmp_path, "recipe.safetensors", forged),
          lambda: sq.load(tmp_path / "recipe.safetensors"), usable_preprocessing)


def test_safetensors_forged_class_names(tmp_path: Path, safetensors_file) -> None:
    data, reference = safetensors_file
    names = {"not_json": "[1", "a_dict": "{}", "too_few": json.dumps(["a"] * 9), "too_many": json.dumps(["a"] * 11),
             "deep": "[" * 100_000, "numbers": json.dumps(list(range(10))), "huge": json.dumps(["x" * 100_000] * 10)}
    cases = [(name, mutate.with_metadata(data, class_names=text)) for name, text in names.items()]
    check_all("safetensors", cases, tmp_path, ".safetensors", sq.load,
              lambda name, model: at_most_changed(reference, 0)(model))


# -- torchvision .pth (torch.save of to_torchvision's state dict) -------------------------------------------


def _torch_bytes(value: object, legacy: bool = False) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def pth_file() -> tuple[bytes, bytes, sq.SqueezeNet]:
    """A real 1_1 network (random weights) as torchvision saves it: zip and legacy pickle layouts."""
    torch.manual_seed(0)
    model = sq.build("1_1")
    state = to_torchvision(model)
    return _torch_bytes(state), _torch_bytes(state, legacy=True), model


def test_pth_truncated_is_refused(tmp_path: Path, pth_file) -> None:
    zipped, legacy, _ = pth_file
    cases = [(f"zip_cut{cut}", zipped[:cut]) for cut in mutate.truncation_offsets(len(zipped), 12, seed=4,
                                                                                  landmarks=[len(zipped) - 22])]
    cases += [(f"legacy_cut{cut}", legacy[:cut]) for cut in mutate.truncation_offsets(len(legacy), 10, seed=5)]
    check_all("pth", cases, tmp_path, ".pth", sq.load, refuse=True)


@fuzz_settings(short=14, long=400)
@given(data_=st.data())
def test_pth_bit_flips(tmp_path: Path, pth_file, data_: st.DataObject) -> None:
    zipped, legacy, model = pth_file
    source = data_.draw(st.sampled_from([zipped, legacy]), "layout")
    region = data_.draw(st.sampled_from(["start", "end", "anywhere"]), "region")
    bounds = {"start": (0, 4096), "end": (len(source) - 4096, len(source)), "anywhere": (0, len(source))}[region]
    flips = data_.draw(mutate.bit_flips(*bounds), "flips")
    mutated = mutate.flip_bits(source, flips)
    path = mutate.write_case(tmp_path, "flipped.pth", mutated)
    check("pth", mutated, path, lambda: sq.load(path), at_most_changed(model.state_dict(), len(flips)))


def test_pth_unusual_contents(tmp_path: Path, pth_file) -> None:
    _, _, model = pth_file
    state = to_torchvision(model)
    first = next(iter(state))
    cases = {
        "a_list": [1, 2], "a_tensor": torch.zeros(3), "nested": {"state_dict": state, "epoch": 3},
        "nested_not_tensors": {"state_dict": {"a": 1}}, "mixed": {**state, "epoch": 1}, "int_keys": {1: torch.zeros(1)},
        "empty": {}, "wrong_shape": {**state, first: torch.zeros(1)},
        "extra": {**state, "features.99.weight": torch.zeros(1)},
        "short_key": {"w": torch.zeros(1)}, "our_names": model.state_dict(),
        "half": {k: v.half() for k, v in state.items()}, "float64": {k: v.double() for k, v in state.items()},
        "int64": {k: v.long() for k, v in state.items()},
        "complex": {k: v.to(torch.complex64) for k, v in state.items()},
        "sparse": {**state, "features.0.bias": state["features.0.bias"].to_sparse()},
        "meta": {k: torch.empty(v.shape, device="meta") for k, v in state.items()},
        "quantized": {**state, first: torch.quantize_per_tensor(state[first], 0.1, 0, torch.qint8)},
        "views_of_one_storage": {k: torch.zeros(10**6)[: v.numel()].view(v.shape) for k, v in state.items()},
    }
    exact = model.state_dict()

    def accept(name: str, loaded: object) -> str | None:
        if name in ("half", "int64"):  # rounded on purpose: any values are fine, the shapes must be right
            return None if isinstance(changed_values(exact, loaded), int) else changed_values(exact, loaded)
        if name == "views_of_one_storage":
            return None if changed_values({k: torch.zeros_like(v) for k, v in exact.items()}, loaded) == 0 else "wrong"
        return at_most_changed(exact, 0)(loaded)

    check_all("pth", [(name, _torch_bytes(value)) for name, value in cases.items()], tmp_path, ".pth", sq.load, accept)


# -- .sqz (Deep-Compressed container), once squeezenet.compress registers it with sq.load -----------------------


@pytest.fixture(scope="module")
def sqz_file(net_file) -> tuple[bytes, dict[str, torch.Tensor]]:
    sqz = pytest.importorskip("squeezenet.compress.sqz", reason="the .sqz container is not in this tree yet")
    from squeezenet.weights import deep_compression

    data, state, biases = net_file
    model = sq.load(shared_path(NET_FILE))
    shared = sqz.shared_from_net(deep_compression.parse(data, biases), model)
    encoded, _ = sqz.encode_sqz(model, shared, sqz.Encoding(huffman=True))
    return encoded, state


def test_sqz_truncated_is_refused(tmp_path: Path, sqz_file) -> None:
    data, _ = sqz_file
    header_end = 8 + struct.unpack("<I", data[4:8])[0]
    cuts = mutate.truncation_offsets(len(data), 12, seed=6, landmarks=[4, 8, header_end])
    check_all("sqz", [(f"cut{cut}", data[:cut]) for cut in cuts], tmp_path, ".sqz", sq.load, refuse=True)


@fuzz_settings(short=10, long=300)
@given(data_=st.data())
def test_sqz_bit_flips_and_forged_lengths(tmp_path: Path, sqz_file, data_: st.DataObject) -> None:
    data, reference = sqz_file
    header_end = 8 + struct.unpack("<I", data[4:8])[0]
    kind = data_.draw(st.sampled_from(["header", "body", "length"]), "kind")
    if kind == "length":
        mutated = mutate.put_uint(data, 4, 4, data_.draw(mutate.FORGED_COUNTS, "length"))
    else:
        bounds = (0, header_end) if kind == "header" else (header_end, len(data))
        mutated = mutate.flip_bits(data, data_.draw(mutate.bit_flips(*bounds), "flips"))
    if mutated == data:
        return

    def accept(model: object) -> str | None:  # Huffman-coded streams: one flipped bit may shift many codes
        changed = changed_values(reference, model)
        return changed if isinstance(changed, str) else None

    path = mutate.write_case(tmp_path, "flipped.sqz", mutated)
    check("sqz", mutated, path, lambda: sq.load(path), accept)
