"""Every convolution of a spec, once, with each name it goes by: one table instead of string juggling per reader.

One row per convolution, in network order (which is also the order of the Caffe
release and of the Deep Compression file)::

    short (Table 1)   module path                 Caffe release       Deep Compression
    conv1             features.conv1              conv1               conv1
    fire2.squeeze     features.fire2.squeeze      fire2/squeeze1x1    fire2/conv1x1_1
    fire2.expand1x1   features.fire2.expand1x1    fire2/expand1x1     fire2/conv1x1_2
    fire2.expand3x3   features.fire2.expand3x3    fire2/expand3x3     fire2/conv3x3_2
    ...
    conv10            classifier.conv10           conv10              conv_final

With batch norm a convolution sits in a block beside its norm, so its module
path gains ``.conv`` (``features.fire2.squeeze.conv``). A complex bypass's 1x1
convolution (``fire3.bypass``) exists in neither release: its foreign names are None.
The short names are the ones compression settings and reports use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from torch import nn

from ..model import SqueezeNet
from ..spec import Spec

# Our convolution name -> (Caffe release suffix, Deep Compression suffix); a Fire module's are prefixed with "fireN/".
_FOREIGN = {
    "conv1": ("conv1", "conv1"),
    "squeeze": ("squeeze1x1", "conv1x1_1"),
    "expand1x1": ("expand1x1", "conv1x1_2"),
    "expand3x3": ("expand3x3", "conv3x3_2"),
    "conv10": ("conv10", "conv_final"),
}


@dataclass(frozen=True)
class LayerName:
    """One convolution under its four names; ``caffe``/``deep_compression`` are None where a release lacks it."""

    short: str
    module: str
    caffe: str | None
    deep_compression: str | None


def layer_names(spec: Spec) -> tuple[LayerName, ...]:
    """Every convolution of ``spec`` in network order, as SqueezeNet(spec) builds them."""
    wrapped = ".conv" if spec.batch_norm else ""
    rows = [_row("conv1", "features.conv1" + wrapped, "conv1", "")]
    channels = spec.conv1_filters
    for fire_name, fire in zip(spec.fire_names(), spec.fire_modules(), strict=True):
        parts = ["squeeze"] + ["expand1x1"] * bool(fire.expand1x1) + ["expand3x3"] * bool(fire.expand3x3)
        rows += [_row(f"{fire_name}.{part}", f"features.{fire_name}.{part}{wrapped}", part, f"{fire_name}/")
                 for part in parts]
        if spec.bypass == "complex" and channels != fire.expand:  # the model's 1x1 bypass conv, never batch-normed
            rows.append(LayerName(f"{fire_name}.bypass", f"features.{fire_name}.bypass", None, None))
        channels = fire.expand
    rows.append(_row("conv10", "classifier.conv10", "conv10", ""))
    return tuple(rows)


def _row(short: str, module: str, part: str, prefix: str) -> LayerName:
    caffe, deep_compression = _FOREIGN[part]
    return LayerName(short, module, prefix + caffe, prefix + deep_compression)


def module_paths(spec: Spec) -> dict[str, str]:
    """Short name -> module path of every convolution (``fire2.squeeze`` -> ``features.fire2.squeeze``)."""
    return {row.short: row.module for row in layer_names(spec)}


def convolutions(model: SqueezeNet) -> dict[str, nn.Conv2d]:
    """Every convolution module of ``model`` by its short name, in network order."""
    return {row.short: cast(nn.Conv2d, model.get_submodule(row.module)) for row in layer_names(model.spec)}
