"""Preprocessing as data: how a PIL image becomes the float tensor a set of weights expects.

Weights are only right together with the preprocessing they were trained
with (Caffe's BGR 0-255 minus a mean, or torchvision's RGB 0-1 normalised),
so a ``Preprocessing`` is a frozen, JSON-serialisable record that travels with
the weights (in our safetensors metadata and as ``model.preprocess``), never a
chain of code. Steps, in order:

1. convert to RGB (or L for one-channel models);
2. resize with ``interpolation`` (PIL, antialiased): ``"squash"`` to ``resize x resize``
   ignoring the aspect ratio (how Caffe's ImageNet data was prepared), or
   ``"short_side"`` so the shorter side is ``resize`` (torchvision's recipe); ``resize=None`` skips it;
3. center crop ``crop x crop`` (``None``: no crop);
4. to float, values in ``[0, scale]`` (``scale`` 1.0 or 255.0);
5. reorder channels to ``channel_order`` ("RGB", "BGR" or "L");
6. subtract ``mean`` and divide by ``std``, both given per channel in ``channel_order`` and in ``scale`` units.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from .errors import DataError

MAX_SIDE = 4096  # largest resize/crop a recipe may ask for (a network never needs more; see Spec.min_input_size)
MAX_PIXELS = MAX_SIDE * MAX_SIDE  # "short_side" caps the long side so that no resized image holds more pixels
RESIZE_MODES = ("squash", "short_side")
CHANNEL_ORDERS = ("RGB", "BGR", "L")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")  # torchvision InterpolationMode names, lower case


@dataclass(frozen=True)
class Preprocessing:
    """One image recipe; call it on a PIL image to get a (C, H, W) float tensor."""

    name: str = "custom"
    resize: int | None = 256
    resize_mode: str = "squash"
    crop: int | None = None
    channel_order: str = "RGB"
    scale: float = 1.0
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, name, tuple(float(v) for v in value))
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.name, str):
            raise DataError(f"preprocessing name must be a string, got {self.name!r}")
        for name in ("resize", "crop"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or not 1 <= value <= MAX_SIDE):
                raise DataError(f"preprocessing {name} must be an integer from 1 to {MAX_SIDE} or None, got {value!r}")
        if self.resize_mode not in RESIZE_MODES:
            raise DataError(f"preprocessing resize_mode must be one of {', '.join(RESIZE_MODES)}, "
                            f"got {self.resize_mode!r}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise DataError(f"preprocessing channel_order must be one of {', '.join(CHANNEL_ORDERS)}, "
                            f"got {self.channel_order!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise DataError(f"preprocessing interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                            f"got {self.interpolation!r}")
        if not isinstance(self.scale, (int, float)) or not 0 < self.scale < math.inf:
            raise DataError(f"preprocessing scale must be positive and finite, got {self.scale!r}")
        channels = self.channels
        for name in ("mean", "std"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or len(value) != channels:
                raise DataError(f"preprocessing {name} needs {channels} values for {self.channel_order}, "
                                f"got {value!r}")
        if not all(math.isfinite(v) for v in self.mean) or not all(0 < v < math.inf for v in self.std):
            raise DataError(f"preprocessing mean must be finite and std positive and finite, got {self.mean!r} and "
                            f"{self.std!r}")

    @property
    def channels(self) -> int:
        return 1 if self.channel_order == "L" else 3

    @property
    def output_size(self) -> tuple[int, int] | None:
        """(height, width) of every output, or None when it depends on the image."""
        if self.crop is not None:
            return (self.crop, self.crop)
        if self.resize is not None and self.resize_mode == "squash":
            return (self.resize, self.resize)
        return None

    def replace(self, **changes: Any) -> Preprocessing:
        return dataclasses.replace(self, **changes)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.normalize(self.pixels(image))

    def pixels(self, image: Image.Image) -> torch.Tensor:
        """Steps 1-3: the resized and cropped image as uint8 (C, H, W), computed by Pillow alone. A server
        decodes in many threads and normalises batches in one: torch's parallel kernels run in a single
        thread then, which keeps OpenMP from oversubscribing the cores."""
        from torchvision.transforms import InterpolationMode  # torchvision takes seconds to import: when used
        from torchvision.transforms.v2 import functional as F

        image = image.convert("L" if self.channel_order == "L" else "RGB")
        interpolation = InterpolationMode[self.interpolation.upper()]
        if self.resize is not None:
            if self.resize_mode == "squash":
                image = F.resize(image, [self.resize, self.resize], interpolation=interpolation, antialias=True)
            else:  # an extreme aspect ratio (say 20000x1) gets its long side capped, not gigabytes of pixels
                image = F.resize(image, [self.resize], interpolation=interpolation, antialias=True,
                                 max_size=max(self.resize + 1, MAX_PIXELS // self.resize))
        if self.crop is not None:
            image = F.center_crop(image, [self.crop, self.crop])
        return F.pil_to_tensor(image)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """Steps 4-6 on uint8 pixels, one image (C, H, W) or a batch (N, C, H, W): the one normalisation that
        single images (``__call__``) and the training loop's decoded batches both go through. An RGB batch
        for an "L" recipe becomes luma with Pillow's weights, as ``convert("L")`` makes it."""
        channel_axis = pixels.dim() - 3
        values = pixels.to(torch.float32)
        if self.scale != 255.0:
            values = values * (self.scale / 255.0)
        if self.channel_order == "BGR":
            values = values.flip(channel_axis)
        elif self.channel_order == "L" and values.shape[channel_axis] == 3:
            luma = torch.tensor([0.299, 0.587, 0.114], device=values.device).view(3, 1, 1)
            values = (values * luma).sum(channel_axis, keepdim=True)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=values.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=values.device).view(-1, 1, 1)
        return (values - mean) / std

    # -- serialisation -------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        if not isinstance(data, dict):
            raise DataError(f"preprocessing must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DataError(f"unknown preprocessing field(s): {', '.join(unknown)}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as error:
            raise DataError(f"bad preprocessing: {error}") from None

    @classmethod
    def from_json(cls, text: str) -> Preprocessing:
        try:
            return cls.from_dict(json.loads(text))
        except (json.JSONDecodeError, RecursionError) as error:
            raise DataError(f"preprocessing is not valid JSON: {error}") from None


# -- named presets ------------------------------------------------------------

PREPROCESSING_PRESETS: dict[str, Preprocessing] = {}


def register_preprocessing(preprocessing: Preprocessing) -> Preprocessing:
    """Add a named recipe; ``get_preprocessing(name)`` then finds it."""
    PREPROCESSING_PRESETS[preprocessing.name] = preprocessing
    return preprocessing


# The original Caffe release (forresti/SqueezeNet) and the Deep Compression file.
CAFFE = register_preprocessing(Preprocessing(
    name="caffe", resize=256, resize_mode="squash", crop=227, channel_order="BGR", scale=255.0,
    mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0),
))
# torchvision's ImageNet weights (IMAGENET1K_V1 transforms).
TORCHVISION = register_preprocessing(Preprocessing(
    name="torchvision", resize=256, resize_mode="short_side", crop=224, channel_order="RGB", scale=1.0,
    mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
))


def get_preprocessing(name_or_preprocessing: str | Preprocessing) -> Preprocessing:
    """A preset by name ("caffe", "torchvision", ...) or the given recipe unchanged."""
    if isinstance(name_or_preprocessing, Preprocessing):
        return name_or_preprocessing
    try:
        return PREPROCESSING_PRESETS[name_or_preprocessing]
    except KeyError:
        raise DataError(f"unknown preprocessing {name_or_preprocessing!r}; "
                        f"known: {', '.join(sorted(PREPROCESSING_PRESETS))}") from None
