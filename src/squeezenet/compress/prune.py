"""Magnitude pruning to per-layer densities (Deep Compression's first stage).

Each layer keeps its ``density`` fraction of weights with the largest
magnitudes; the rest become zero and stay zero: the returned masks are applied
now and again by fine-tuning (see ``quantize.attach``). Weights that are already
zero are never kept, so pruning an already-pruned model (the paper's file)
never brings weights back.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping

import torch
from torch import nn

from ..weights.names import convolutions
from .layers import CompressionError, per_layer

# The densities of the paper's Table 1 ("sparsity" column: the fraction of weights kept), which the
# released compressed_SqueezeNet.net realises: 416k of 1.25M weights kept. Patterns, last match wins.
PAPER_DENSITIES: dict[str, float] = {
    "conv1": 1.0,
    "fire*.squeeze": 1.0,
    "fire*.expand1x1": 1.0,
    "fire*.expand3x3": 0.33,
    "fire6.expand1x1": 0.5,
    "fire7.squeeze": 0.5,
    "fire8.expand1x1": 0.5,
    "fire8.expand3x3": 0.3,
    "fire9.squeeze": 0.5,
    "fire9.expand3x3": 0.3,
    "conv10": 0.2,
}

DENSITY_PRESETS: dict[str, Mapping[str, float] | float] = {"paper": PAPER_DENSITIES, "none": 1.0}


def _check_density(value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise CompressionError(f"density must be a number in (0, 1], got {value!r}")


def resolve_densities(model: nn.Module, prune: str | float | Mapping[str, float] | None) -> dict[str, float]:
    """Every layer's target density from a preset name (``paper``, ``none``), one density, or a mapping."""
    names = list(convolutions(model))
    if prune is None:
        prune = "none"
    if isinstance(prune, str):
        if prune not in DENSITY_PRESETS:
            raise CompressionError(f"unknown pruning preset {prune!r}; known: {', '.join(DENSITY_PRESETS)} "
                                   "or a density in (0, 1]")
        preset = DENSITY_PRESETS[prune]
        # The paper's preset names fire2..fire9; a spec with fewer Fire modules uses the patterns that match.
        if isinstance(preset, Mapping):
            preset = {k: v for k, v in preset.items() if any(fnmatch.fnmatchcase(n, k) for n in names)}
            return per_layer(preset, names, f"pruning preset {prune!r}", _check_density, default=1.0)
        prune = preset
    return per_layer(prune, names, "density", _check_density, default=1.0)


def magnitude_masks(model: nn.Module, densities: Mapping[str, float]) -> dict[str, torch.Tensor]:
    """For each layer, a boolean mask of the ``round(density * size)`` largest-magnitude non-zero weights."""
    masks = {}
    for name, conv in convolutions(model).items():
        weight = conv.weight.detach()
        magnitude = weight.abs().flatten()
        keep = min(math.floor(densities[name] * magnitude.numel() + 0.5), int((magnitude > 0).sum()))
        mask = torch.zeros(magnitude.numel(), dtype=torch.bool)
        if keep:
            mask[torch.topk(magnitude, keep, sorted=False).indices] = True
        masks[name] = mask.view_as(weight)
    return masks


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero every weight outside its layer's mask (in place)."""
    for name, conv in convolutions(model).items():
        if name in masks:
            conv.weight.mul_(masks[name].to(conv.weight.dtype))


def prune(model: nn.Module, densities: str | float | Mapping[str, float] | None) -> dict[str, torch.Tensor]:
    """Prune ``model`` in place to the given densities; returns the masks to keep applied while fine-tuning."""
    masks = magnitude_masks(model, resolve_densities(model, densities))
    apply_masks(model, masks)
    return masks


def density(mask_or_weight: torch.Tensor) -> float:
    """Fraction of non-zero entries."""
    return float((mask_or_weight != 0).sum()) / max(1, mask_or_weight.numel())


def parse_prune(text: str) -> str | float:
    """A --prune argument: a preset name or one density in (0, 1]."""
    if text in DENSITY_PRESETS:
        return text
    try:
        value = float(text)
    except ValueError:
        raise CompressionError(f"--prune must be {', '.join(DENSITY_PRESETS)} or a density in (0, 1], "
                               f"got {text!r}") from None
    _check_density(value)
    return value
