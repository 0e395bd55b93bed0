"""The built network: Table 1 parameter counts, shapes, initialisation, bypass."""

from __future__ import annotations

import math

import pytest
import torch

import squeezenet as sq

PAPER_TABLE_1 = {
    "conv1": 14_208, "fire2": 11_920, "fire3": 12_432, "fire4": 45_344, "fire5": 49_440,
    "fire6": 104_880, "fire7": 111_024, "fire8": 188_992, "fire9": 197_184, "conv10": 513_000,
}


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_v1_0_has_the_papers_parameter_count():
    assert count(sq.build("1_0")) == 1_248_424


def test_v1_1_parameter_count():
    assert count(sq.build("1_1")) == 1_235_496


def test_per_layer_parameters_equal_table_1():
    table = sq.summary("1_0")
    params = {layer.name: layer.params for layer in table.layers if layer.params}
    assert params == PAPER_TABLE_1
    assert table.total_params == 1_248_424


def test_cifar_variant_is_small_and_keeps_resolution():
    model = sq.build("cifar")
    assert count(model) <= 1_250_000
    table = sq.summary(model, 32)
    assert table.layers[-1].output[32] == (10, 1, 1)


@pytest.mark.parametrize(("arch", "size", "final_map"), [
    ("1_0", 224, 13), ("1_0", 227, 13), ("1_1", 224, 13), ("1_1", 227, 14), ("cifar", 32, 8),
])
def test_output_shapes(arch, size, final_map):
    model = sq.build(arch).eval()
    with torch.inference_mode():
        logits = model(torch.randn(2, 3, size, size))
    assert logits.shape == (2, model.spec.num_classes)
    assert model.spec.spatial_sizes(size)["conv10"] == final_map


def test_v1_0_table_1_output_sizes_at_224():
    table = sq.summary("1_0", 224)
    sizes = {layer.name: layer.output[224] for layer in table.layers}
    assert sizes["conv1"] == (96, 109, 109)
    assert sizes["pool1"] == (96, 54, 54)
    assert sizes["fire4"] == (256, 54, 54)
    assert sizes["pool4"] == (256, 27, 27)
    assert sizes["pool8"] == (512, 13, 13)
    assert sizes["conv10"] == (1000, 13, 13)
    assert sizes["pool10"] == (1000, 1, 1)


def test_caffe_v1_0_conv10_padding_grows_the_final_map():
    padded = sq.build("1_0", conv10_padding=1)
    assert count(padded) == 1_248_424
    assert padded.spec.spatial_sizes(227)["conv10"] == 15


def test_macs_are_counted_per_layer():
    table = sq.summary("1_0", 224)
    conv1 = next(layer for layer in table.layers if layer.name == "conv1")
    assert conv1.macs[224] == 96 * 109 * 109 * 3 * 7 * 7
    assert table.total_macs(224) > 700_000_000  # the paper's v1.0 is about 0.8 GMACs; v1.1 about 2.4x less
    ratio = table.total_macs(224) / sq.summary("1_1", 224).total_macs(224)
    assert 2.2 < ratio < 2.6


def test_initialisation_matches_the_reference():
    torch.manual_seed(0)
    model = sq.build("1_0")
    final = model.classifier.conv10.weight
    assert abs(final.std().item() - 0.01) < 0.001
    conv1 = model.features.conv1.weight
    bound = math.sqrt(6 / (3 * 7 * 7))  # kaiming_uniform with a=0: sqrt(6 / fan_in)
    assert conv1.abs().max().item() <= bound
    assert conv1.abs().max().item() > 0.9 * bound
    assert all(m.bias.abs().sum() == 0 for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def test_initial_loss_is_near_ln_classes():
    torch.manual_seed(0)
    model = sq.build("1_1", num_classes=10).eval()
    with torch.inference_mode():
        logits = model(torch.randn(4, 3, 64, 64))
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3]))
    assert abs(loss.item() - math.log(10)) < 0.1


def test_input_too_small_raises_a_typed_error():
    model = sq.build("1_0").eval()
    with pytest.raises(sq.InputSizeError, match="minimum input size"):
        model(torch.randn(1, 3, 20, 20))


def test_pct_3x3_extremes_drop_an_expand_branch():
    only_1x1 = sq.build(sq.Spec(fires=sq.Metaparameters(pct_3x3=0.0)))
    assert only_1x1.features.fire2.expand3x3 is None
    only_3x3 = sq.build(sq.Spec(fires=sq.Metaparameters(pct_3x3=1.0)))
    assert only_3x3.features.fire2.expand1x1 is None
    with torch.inference_mode():
        assert only_3x3.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_batch_norm_variant_builds_and_runs():
    model = sq.build("cifar", batch_norm=True).eval()
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    with torch.inference_mode():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_simple_bypass_adds_identities_where_channels_match():
    model = sq.build("1_0", bypass="simple")
    with_bypass = [n for n, m in model.features.named_children() if isinstance(m, sq.Fire) and m.bypass is not None]
    assert with_bypass == ["fire3", "fire5", "fire7", "fire9"]
    assert count(model) == 1_248_424


def test_complex_bypass_adds_1x1_convs_elsewhere():
    model = sq.build("1_0", bypass="complex")
    convs = {n: m.bypass for n, m in model.features.named_children()
             if isinstance(m, sq.Fire) and isinstance(m.bypass, torch.nn.Conv2d)}
    assert sorted(convs) == ["fire2", "fire4", "fire6", "fire8"]
    extra = sum(p.numel() for m in convs.values() for p in m.parameters())
    assert count(model) == 1_248_424 + extra


def test_final_relu_can_be_dropped_for_few_class_training():
    torch.manual_seed(0)
    paper, linear = sq.build("cifar"), sq.build("cifar", final_relu=False)
    linear.load_state_dict(paper.state_dict())
    with torch.no_grad():
        linear.classifier.conv10.bias.fill_(-5.0)  # every class output negative: the paper's ReLU would zero them
        paper.classifier.conv10.bias.fill_(-5.0)
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert paper.eval()(x).abs().max() == 0
        assert linear.eval()(x).max() < 0
    assert sq.Spec.from_json(linear.spec.to_json()).final_relu is False


def test_classifier_options_change_the_head_and_keep_every_weight():
    torch.manual_seed(0)
    model = sq.build("1_1", num_classes=10).eval()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(images)
        model.classifier.conv10.bias.fill_(-1.0)  # negative logits: the final ReLU zeroes them
        before["classifier.conv10.bias"] = model.classifier.conv10.bias.clone()
        with_relu = model.forward_head(features)
        model.set_weight_free_options(dropout=0.0, final_relu=False)
        without = model.forward_head(features)
    assert model.spec.dropout == 0.0 and model.spec.final_relu is False and model.classifier.dropout.p == 0.0
    assert list(model.state_dict()) == list(before)
    assert all(torch.equal(model.state_dict()[key], value) for key, value in before.items())
    assert (with_relu >= 0).all() and (without < 0).any()  # the pool now averages conv10's map as it is
    assert torch.allclose(without, model.classifier.conv10(features).mean((2, 3)), atol=1e-6)
    with pytest.raises(sq.SpecError, match="dropout"):
        model.set_weight_free_options(dropout=1.0)


def test_conv1_stride_changes_the_maps_and_keeps_every_weight():
    torch.manual_seed(0)
    model = sq.build("1_1", num_classes=10).eval()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    with torch.no_grad():
        at_128 = model.forward_features(torch.randn(1, 3, 128, 128))
        model.set_weight_free_options(conv1_stride=1)
        at_64 = model.forward_features(torch.randn(1, 3, 64, 64))
    assert model.spec.conv1_stride == 1 and model.features.conv1.stride == (1, 1)
    assert at_64.shape == at_128.shape  # the same maps from an image upscaled half as much
    assert all(torch.equal(model.state_dict()[key], value) for key, value in before.items())
    assert model.min_input_size == model.spec.min_input_size() < sq.build("1_1").min_input_size
    with pytest.raises(sq.SpecError, match="conv1_stride"):
        model.set_weight_free_options(conv1_stride=0)
