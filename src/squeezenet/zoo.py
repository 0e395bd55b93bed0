"""The model zoo: build a network, fresh or from pretrained weights with a new head, and list what exists.

``build("1_1", weights="1_1-caffe", num_classes=5)`` is timm's
``create_model(name, pretrained=True, num_classes=5)``: the pretrained
backbone, a freshly initialised conv10 for the new classes, and the
preprocessing the weights came with. ``list_models`` names the presets,
``list_pretrained`` the public weights with their metadata (torchvision's
weights enums: preprocessing, categories, parameters, minimum input size, file
size, and the accuracy measured by this project, None where it was not).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import WeightsError
from .model import SqueezeNet
from .model import build as build_from_spec
from .spec import PRESETS, WEIGHT_FREE_FIELDS, Spec

if TYPE_CHECKING:
    from .weights.registry import PretrainedWeights

FREE_FIELDS = ("num_classes", *WEIGHT_FREE_FIELDS)  # the spec fields build may change on pretrained weights


def build(arch: str | Spec | None = None, weights: str | os.PathLike[str] | None = None, *,
          class_names: Sequence[str] | None = None, **overrides: Any) -> SqueezeNet:
    """A network in training mode: a preset or Spec freshly initialised, or pretrained ``weights`` with a new head.

    Without ``weights``: ``arch`` (default "1_0") with spec fields overridden by name (``num_classes=10``).
    With ``weights`` (anything ``load`` takes: a file, a model folder, a pretrained name, ``hf-hub:ORG/NAME``):
    the network and the preprocessing come from the weights, ``arch`` (if given) must be theirs, and only
    the settings without tensors may change: ``num_classes`` different from the weights' re-makes conv10
    (``reset_classifier``), ``dropout``, ``final_relu`` and ``conv1_stride`` are set. ``class_names`` name the
    outputs (and, alone, set their number). Like timm and torchvision, the model comes in training mode: call
    ``.eval()`` to predict.
    """
    if class_names is not None:
        class_names = tuple(str(name) for name in class_names)
        overrides.setdefault("num_classes", len(class_names))
    if weights is None:
        model = build_from_spec(arch or "1_0", **overrides)
        if class_names is not None:
            model.meta = model.meta.replace(class_names=class_names)
        return model
    backbone_changes = sorted(set(overrides) - set(FREE_FIELDS))
    if backbone_changes:
        raise WeightsError(f"{weights}: {', '.join(backbone_changes)} would change the pretrained network; with "
                           f"weights, build changes only {', '.join(FREE_FIELDS)}")
    from .weights.io import load
    from .weights.registry import resolve

    model = load(resolve(weights), arch=arch)
    return _with_head(model, overrides.pop("num_classes", None), class_names, overrides).train()


def _with_head(model: SqueezeNet, num_classes: int | None, class_names: tuple[str, ...] | None,
               changes: dict[str, Any]) -> SqueezeNet:
    """``model`` with ``changes`` of its weight-free fields and, for a new class count, a fresh conv10."""
    model.set_weight_free_options(**changes)
    if num_classes is not None and num_classes != model.spec.num_classes:
        model.reset_classifier(num_classes, class_names)
    elif class_names is not None:  # the pretrained head kept, its outputs renamed
        model.meta = model.meta.replace(class_names=class_names)
    return model


def list_models(pattern: str | None = None) -> list[str]:
    """The preset names ``build`` takes (shell-style ``pattern``, e.g. "cifar*", filters them)."""
    return [name for name in PRESETS if pattern is None or fnmatch.fnmatchcase(name, pattern)]


def list_pretrained(pattern: str | None = None) -> dict[str, PretrainedWeights]:
    """The public weights by name (``pattern`` filters), each with its metadata: ``spec``, ``transforms``
    (preprocessing), ``categories``, ``num_params``, ``min_input_size``, ``file_size`` and ``accuracy`` on this
    project's ImageNet samples; a figure never measured here is None. Iterating gives the names, as timm's."""
    from .weights.registry import REGISTRY

    return {name: entry for name, entry in REGISTRY.items() if pattern is None or fnmatch.fnmatchcase(name, pattern)}
