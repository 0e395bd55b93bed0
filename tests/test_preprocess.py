"""Preprocessing presets: exact documented values, serialisation, and what each step does to real pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from squeezenet import DataError, Preprocessing, get_preprocessing
from squeezenet.preprocess import CAFFE, TORCHVISION

from .conftest import shared_path


def solid(rgb: tuple[int, int, int], size: tuple[int, int] = (300, 200), mode: str = "RGB") -> Image.Image:
    return Image.new("RGB", size, rgb).convert(mode)


def test_presets_are_the_documented_recipes() -> None:
    assert get_preprocessing("caffe") == Preprocessing(
        name="caffe", resize=256, resize_mode="squash", crop=227, channel_order="BGR", scale=255.0,
        mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0))
    assert get_preprocessing("torchvision") == Preprocessing(
        name="torchvision", resize=256, resize_mode="short_side", crop=224, channel_order="RGB", scale=1.0,
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    assert CAFFE.output_size == (227, 227) and TORCHVISION.output_size == (224, 224)


def test_caffe_recipe_gives_bgr_0_255_minus_mean() -> None:
    out = CAFFE(solid((200, 100, 50)))
    assert out.shape == (3, 227, 227) and out.dtype == torch.float32
    assert torch.allclose(out[:, 100, 100], torch.tensor([50 - 104.0, 100 - 117.0, 200 - 123.0]))


def test_torchvision_recipe_gives_normalised_rgb() -> None:
    out = TORCHVISION(solid((200, 100, 50)))
    expected = (torch.tensor([200, 100, 50]) / 255.0 - torch.tensor(TORCHVISION.mean)) / torch.tensor(TORCHVISION.std)
    assert out.shape == (3, 224, 224)
    assert torch.allclose(out[:, 50, 50], expected, atol=1e-6)


def test_resize_rule_decides_what_the_crop_sees() -> None:
    # 400x200 image, white in the left quarter: squashing keeps a white strip inside the crop,
    # a short-side resize (to 512x256) pushes it outside the centre crop.
    image = np.zeros((200, 400, 3), dtype=np.uint8)
    image[:, :100] = 255
    picture = Image.fromarray(image)
    squash = CAFFE.replace(channel_order="RGB", mean=(0.0, 0.0, 0.0))(picture)
    short = CAFFE.replace(channel_order="RGB", mean=(0.0, 0.0, 0.0), resize_mode="short_side")(picture)
    assert squash[0, 100, :40].min() == 255 and squash[0, 100, 60:].max() == 0
    assert short.max() == 0


def test_serialisation_round_trips() -> None:
    for recipe in (CAFFE, TORCHVISION, Preprocessing(name="cifar", resize=None, crop=None, mean=(0.49, 0.48, 0.45),
                                                     std=(0.25, 0.24, 0.26))):
        assert Preprocessing.from_dict(recipe.to_dict()) == recipe
        assert Preprocessing.from_json(recipe.to_json()) == recipe


def test_small_images_without_resize_or_crop_keep_their_size() -> None:
    recipe = Preprocessing(resize=None, crop=None)
    assert recipe(solid((1, 2, 3), (32, 32))).shape == (3, 32, 32)
    assert recipe.output_size is None
    assert Preprocessing(resize=32, crop=None).output_size == (32, 32)


def test_any_image_mode_is_converted() -> None:
    for mode in ("L", "RGBA", "P", "CMYK"):
        assert CAFFE(solid((10, 20, 30), mode=mode)).shape == (3, 227, 227)
    gray = Preprocessing(channel_order="L", mean=(0.5,), std=(0.5,), resize=None)
    assert gray(solid((255, 255, 255), (8, 8))).shape == (1, 8, 8)


@pytest.mark.parametrize(("changes", "field"), [
    ({"resize_mode": "stretch"}, "resize_mode"),
    ({"channel_order": "GBR"}, "channel_order"),
    ({"crop": 0}, "crop"),
    ({"resize": -3}, "resize"),
    ({"mean": (1.0, 2.0)}, "mean"),
    ({"std": (1.0, 0.0, 1.0)}, "std"),
    ({"scale": 0}, "scale"),
    ({"interpolation": "lanczos9"}, "interpolation"),
])
def test_bad_fields_are_refused_by_name(changes: dict, field: str) -> None:
    with pytest.raises(DataError, match=field):
        CAFFE.replace(**changes)


def test_bad_serialised_recipes_are_refused() -> None:
    with pytest.raises(DataError, match="unknown preprocessing field"):
        Preprocessing.from_dict({**CAFFE.to_dict(), "gamma": 2.2})
    with pytest.raises(DataError, match="not valid JSON"):
        Preprocessing.from_json("{not json")
    with pytest.raises(DataError, match="unknown preprocessing 'imagenet'"):
        get_preprocessing("imagenet")


def test_real_photo_matches_a_direct_pil_computation() -> None:
    path = shared_path("data/imagenet-samples/n01440764_tench.JPEG")
    with Image.open(path) as opened:
        rgb = opened.convert("RGB")
    direct = np.asarray(rgb.resize((256, 256), Image.BILINEAR), dtype=np.float32)[14:241, 14:241, ::-1]
    direct = (direct - np.array([104.0, 117.0, 123.0], dtype=np.float32)).transpose(2, 0, 1)
    assert np.array_equal(CAFFE(rgb).numpy(), direct)
