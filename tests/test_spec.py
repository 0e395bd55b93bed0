"""The Spec: metaparameter expansion, presets, validation and serialisation."""

from __future__ import annotations

import pytest

import squeezenet as sq
from squeezenet.spec import round_half_up


def test_metaparameters_expand_to_the_papers_fire_modules():
    fires = sq.get_spec("1_0").fire_modules()
    assert [f.expand for f in fires] == [128, 128, 256, 256, 384, 384, 512, 512]
    assert [f.squeeze for f in fires] == [16, 16, 32, 32, 48, 48, 64, 64]
    assert [f.expand1x1 for f in fires] == [64, 64, 128, 128, 192, 192, 256, 256]
    assert [f.expand3x3 for f in fires] == [64, 64, 128, 128, 192, 192, 256, 256]


def test_v1_1_shares_fire_modules_but_not_the_stem():
    v10, v11 = sq.get_spec("1_0"), sq.get_spec("1_1")
    assert v10.fire_modules() == v11.fire_modules()
    assert (v11.conv1_filters, v11.conv1_kernel, v11.conv1_stride) == (64, 3, 2)
    assert v11.pool_after == ("conv1", "fire3", "fire5")
    assert v10.pool_after == ("conv1", "fire4", "fire8")


def test_other_metaparameters_follow_the_formulas():
    meta = sq.Metaparameters(base_e=100, incr_e=50, pct_3x3=0.25, freq=3, squeeze_ratio=0.3)
    fires = meta.fires()
    expected_e = [100, 100, 100, 150, 150, 150, 200, 200]
    assert [f.expand for f in fires] == expected_e
    assert [f.expand3x3 for f in fires] == [round_half_up(0.25 * e) for e in expected_e]
    assert [f.squeeze for f in fires] == [30, 30, 30, 45, 45, 45, 60, 60]


def test_rounding_is_half_up_not_bankers():
    assert round_half_up(2.5) == 3
    assert round_half_up(0.5) == 1
    assert round_half_up(2.4999) == 2
    # 0.125 * 20 = 2.5 -> 3 (Python's round would give 2)
    assert sq.Metaparameters(base_e=20, incr_e=0, squeeze_ratio=0.125).fires()[0].squeeze == 3


def test_explicit_fire_list_is_accepted():
    spec = sq.Spec(fires=(sq.FireSpec(8, 32, 32), sq.FireSpec(8, 32, 32)), pool_after=("conv1",), num_classes=5)
    model = sq.build(spec)
    assert [name for name, _ in model.features.named_children() if name.startswith("fire")] == ["fire2", "fire3"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"fires": sq.Metaparameters(squeeze_ratio=1.0)}, "fire2.squeeze"),
        ({"fires": sq.Metaparameters(pct_3x3=1.5)}, "pct_3x3"),
        ({"fires": sq.Metaparameters(pct_3x3=-0.1)}, "pct_3x3"),
        ({"fires": sq.Metaparameters(base_e=0)}, "base_e"),
        ({"fires": sq.Metaparameters(freq=0)}, "freq"),
        ({"fires": sq.Metaparameters(squeeze_ratio=0.0)}, "squeeze_ratio"),
        ({"fires": sq.Metaparameters(incr_e=-1)}, "incr_e"),
        ({"num_classes": 0}, "num_classes"),
        ({"conv1_filters": 2.5}, "conv1_filters"),
        ({"conv1_kernel": True}, "conv1_kernel"),
        ({"pool_after": ("fire12",)}, "pool_after"),
        ({"pool_after": ("fire4", "conv1")}, "pool_after"),
        ({"bypass": "sideways"}, "bypass"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": None}, "dropout"),
        ({"fires": (sq.FireSpec(0, 8, 8),)}, "fire2.squeeze"),
        ({"fires": (sq.FireSpec(4, 0, 0),)}, "fire2"),
        ({"fires": ()}, "fires"),
    ],
)
def test_each_invalid_field_is_named_in_the_error(overrides, field):
    with pytest.raises(sq.SpecError, match=field.replace(".", r"\.")):
        sq.get_spec("1_0", **overrides)


def test_wide_squeeze_needs_the_opt_out():
    meta = sq.Metaparameters(squeeze_ratio=1.0)
    with pytest.raises(sq.SpecError, match="Strategy 2"):
        sq.Spec(fires=meta)
    spec = sq.Spec(fires=meta, allow_wide_squeeze=True)
    assert spec.fire_modules()[0].squeeze == 128


def test_too_small_input_names_the_minimum():
    spec = sq.get_spec("1_0")
    minimum = spec.min_input_size()
    spec.spatial_sizes(minimum)
    with pytest.raises(sq.InputSizeError, match=f"minimum input size is {minimum}x{minimum}"):
        spec.spatial_sizes(minimum - 1)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(sq.SpecError, match="known: 1_0, 1_1"):
        sq.get_spec("2_0")


@pytest.mark.parametrize("name", ["1_0", "1_1", "cifar"])
def test_specs_round_trip_through_json(name):
    spec = sq.get_spec(name)
    assert sq.Spec.from_json(spec.to_json()) == spec
    explicit = spec.replace(fires=spec.fire_modules())
    assert sq.Spec.from_json(explicit.to_json()) == explicit


def test_bad_serialised_specs_give_spec_errors():
    with pytest.raises(sq.SpecError, match="unknown spec field"):
        sq.Spec.from_dict({"colour": "red"})
    with pytest.raises(sq.SpecError, match="not valid JSON"):
        sq.Spec.from_json("{nope")
    with pytest.raises(sq.SpecError, match="fires"):
        sq.Spec.from_dict({"fires": {"meta": 1}})


def test_register_adds_a_named_variant():
    spec = sq.register(sq.get_spec("1_1").replace(name="test-tiny-1_1", num_classes=3))
    try:
        assert sq.build("test-tiny-1_1").classifier.conv10.out_channels == 3
    finally:
        sq.PRESETS.pop(spec.name)
