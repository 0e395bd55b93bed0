"""The .caffemodel reader: our minimal schema, the real v1.1 release, legacy V1 files, and damaged files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import squeezenet as sq
from squeezenet import WeightsError
from squeezenet.evaluate import predict
from squeezenet.images import open_image
from squeezenet.weights.caffe import SCHEMA, message_class, read_caffemodel, schema_descriptor
from squeezenet.weights.names import layer_names

from .conftest import shared_path

V11 = "weights/caffe_v1.1/squeezenet_v1.1.caffemodel"


@pytest.fixture(scope="module")
def v11_bytes() -> bytes:
    return shared_path(V11).read_bytes()


@pytest.fixture(scope="module")
def v11_model() -> sq.SqueezeNet:
    return sq.load(shared_path(V11))


def field_numbers(message: str) -> dict[str, int]:
    descriptor = message_class(message).DESCRIPTOR
    return {field.name: field.number for field in descriptor.fields}


def test_schema_uses_caffes_field_numbers() -> None:
    assert field_numbers("NetParameter") == {"name": 1, "layers": 2, "layer": 100}
    assert field_numbers("LayerParameter") == {"name": 1, "type": 2, "blobs": 7, "convolution_param": 106}
    assert field_numbers("V1LayerParameter") == {"name": 4, "type": 5, "blobs": 6, "convolution_param": 10}
    assert field_numbers("BlobProto") == {"shape": 7, "data": 5, "double_data": 8, "num": 1, "channels": 2,
                                          "height": 3, "width": 4}
    assert field_numbers("BlobShape") == {"dim": 1}
    assert field_numbers("ConvolutionParameter") == {"num_output": 1, "pad": 3, "kernel_size": 4, "stride": 6,
                                                     "pad_h": 9, "pad_w": 10}


def test_schema_reader_refuses_what_it_does_not_understand() -> None:
    text = SCHEMA.read_text()
    with pytest.raises(ValueError, match="unsupported"):
        schema_descriptor(text.replace("repeated int64 dim = 1", "map<string, int32> dim = 1"))
    with pytest.raises(ValueError, match="unsupported text"):
        schema_descriptor(text + "\nenum Phase { TRAIN = 0; }\n")


def test_real_v11_file_has_26_convolutions_in_network_order(v11_bytes: bytes) -> None:
    layers = read_caffemodel(v11_bytes)
    assert [layer.name for layer in layers] == [row.caffe for row in layer_names(sq.get_spec("1_1"))]
    assert all(layer.type == "Convolution" and len(layer.blobs) == 2 for layer in layers)
    assert sum(blob.size for layer in layers for blob in layer.blobs) == 1_235_496
    assert layers[0].blobs[0].shape == (64, 3, 3, 3) and layers[-1].blobs[0].shape == (1000, 512, 1, 1)
    pads = {layer.name: layer.pad for layer in layers}
    assert pads["fire2/expand3x3"] == 1 and pads["conv10"] == 0 and pads["conv1"] == 0


def test_real_v11_model_matches_the_readmes_spot_checks(v11_model: sq.SqueezeNet) -> None:
    assert v11_model.spec.name == "1_1" and v11_model.spec.conv10_padding == 0
    assert v11_model.preprocess == sq.get_preprocessing("caffe")
    folder = shared_path("data/imagenet-samples")
    checks = {"n01440764_tench.JPEG": (0, 0.548), "n02097474_Tibetan_terrier.JPEG": (200, 0.754),
              "n04562935_water_tower.JPEG": (900, 1.000)}
    results = predict(v11_model, [folder / name for name in checks], topk=1)
    for (name, (index, probability)), (best,) in zip(checks.items(), results, strict=True):
        assert best.class_index == index, name
        assert best.probability == pytest.approx(probability, abs=0.02), name
    assert results[0][0].name == "tench, Tinca tinca"


def to_legacy_v1(modern: bytes) -> bytes:
    """The same weights in the pre-2015 layout: V1 `layers`, enum types, 4-D num/channels/height/width blobs."""
    source = message_class("NetParameter")()
    source.ParseFromString(modern)
    legacy = message_class("NetParameter")(name=source.name)
    for layer in source.layer:
        old = legacy.layers.add(name=layer.name, type=4)
        old.convolution_param.CopyFrom(layer.convolution_param)
        for blob in layer.blobs:
            dims = [1] * (4 - len(blob.shape.dim)) + list(blob.shape.dim)
            old.blobs.add(num=dims[0], channels=dims[1], height=dims[2], width=dims[3], data=blob.data)
    return legacy.SerializeToString()


def test_legacy_v1_caffemodels_load_the_same(tmp_path: Path, v11_bytes: bytes, v11_model: sq.SqueezeNet) -> None:
    path = tmp_path / "legacy.caffemodel"
    path.write_bytes(to_legacy_v1(v11_bytes))
    legacy = sq.load(path)
    for name, tensor in v11_model.state_dict().items():
        assert torch.equal(legacy.state_dict()[name], tensor), name


def synthetic_caffemodel(spec: sq.Spec, conv10_pad: int | None) -> bytes:
    """A modern caffemodel holding a freshly initialised network (to test v1.0 shapes and padding rules)."""
    model = sq.build(spec)
    state = model.state_dict()
    net = message_class("NetParameter")(name="synthetic")
    for row in layer_names(spec):
        name, module = row.caffe, row.module
        layer = net.layer.add(name=name, type="Convolution")
        if name == "conv10" and conv10_pad is not None:
            layer.convolution_param.pad.append(conv10_pad)
        for suffix in ("weight", "bias"):
            tensor = state[f"{module}.{suffix}"]
            layer.blobs.add(data=tensor.flatten().tolist()).shape.dim.extend(tensor.shape)
    return net.SerializeToString()


@pytest.mark.parametrize(("recorded", "expected"), [(None, 1), (1, 1), (0, 0)])
def test_v10_caffemodels_get_conv10_padding_from_the_file_or_the_release(
        tmp_path: Path, recorded: int | None, expected: int) -> None:
    path = tmp_path / "v10.caffemodel"
    path.write_bytes(synthetic_caffemodel(sq.get_spec("1_0"), recorded))
    model = sq.load(path)
    assert model.spec.name == "1_0" and model.spec.conv10_padding == expected


def test_wrong_arch_names_the_file_and_the_layer(v11_bytes: bytes) -> None:
    with pytest.raises(WeightsError, match=r"squeezenet_v1\.1\.caffemodel: 'conv1 weight' has shape \(64, 3, 3, 3\) "
                                           r"but architecture '1_0' needs \(96, 3, 7, 7\)"):
        sq.load(shared_path(V11), arch="1_0")


def test_damaged_caffemodels_give_one_line_errors(tmp_path: Path, v11_bytes: bytes) -> None:
    cases = {
        "truncated.caffemodel": v11_bytes[: len(v11_bytes) // 3],
        "noise.caffemodel": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "empty.caffemodel": b"",
        "no_weights.caffemodel": message_class("NetParameter")(name="deploy only").SerializeToString(),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(WeightsError) as caught:
            sq.load(tmp_path / name)
        message = str(caught.value)
        assert message.startswith(str(tmp_path / name)) and "\n" not in message, message


def test_blob_with_too_few_values_is_refused(tmp_path: Path) -> None:
    net = message_class("NetParameter")()
    layer = net.layer.add(name="conv1", type="Convolution")
    layer.blobs.add(data=[0.0] * 5).shape.dim.extend([64, 3, 3, 3])
    (tmp_path / "short.caffemodel").write_bytes(net.SerializeToString())
    with pytest.raises(WeightsError, match=r"layer 'conv1' blob 0: holds 5 values but its shape \(64, 3, 3, 3\)"):
        sq.load(tmp_path / "short.caffemodel")


def test_caffe_preprocessing_reads_real_images(v11_model: sq.SqueezeNet) -> None:
    image = open_image(shared_path("data/imagenet-samples/n01440764_tench.JPEG"))
    assert v11_model.preprocess(image).shape == (3, 227, 227)
