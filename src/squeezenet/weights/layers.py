"""The convolution layers of a spec in Caffe order, and the names other releases give them.

The Caffe release (forresti/SqueezeNet) and the paper's Deep Compression file
name the same 26 convolutions differently; both list them in network order,
which is our order too. One table per naming keeps the readers (and a later
writer) free of string juggling.
"""

from __future__ import annotations

from ..spec import Spec

# Our module names inside a Fire module -> the name suffix each release uses.
CAFFE_NAMES = {"conv1": "conv1", "squeeze": "squeeze1x1", "expand1x1": "expand1x1", "expand3x3": "expand3x3",
               "conv10": "conv10"}
DEEP_COMPRESSION_NAMES = {"conv1": "conv1", "squeeze": "conv1x1_1", "expand1x1": "conv1x1_2",
                          "expand3x3": "conv3x3_2", "conv10": "conv_final"}


def conv_layers(spec: Spec, names: dict[str, str] = CAFFE_NAMES) -> list[tuple[str, str]]:
    """(foreign layer name, our module path) for every convolution of ``spec``, in network order."""
    layers = [(names["conv1"], "features.conv1")]
    for fire_name, fire in zip(spec.fire_names(), spec.fire_modules(), strict=True):
        parts = ["squeeze"]
        parts += ["expand1x1"] if fire.expand1x1 else []
        parts += ["expand3x3"] if fire.expand3x3 else []
        layers += [(f"{fire_name}/{names[part]}", f"features.{fire_name}.{part}") for part in parts]
    layers.append((names["conv10"], "classifier.conv10"))
    return layers


def caffe_release_spec(spec: Spec) -> Spec:
    """The spec as Caffe built it: v1.0's conv10 has pad 1 there (torchvision's port dropped it)."""
    return spec.replace(conv10_padding=1) if spec.name == "1_0" else spec
