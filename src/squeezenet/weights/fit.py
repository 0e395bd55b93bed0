"""Fitting a file's tensors to a spec: the candidate search and the name/shape check every reader shares.

Files other than ours hold no spec: with ``arch=None`` every preset is tried
(num_classes taken from the file) and the first whose shapes all fit wins; a
named ``arch`` tries that preset only, and a ``Spec`` is used exactly as given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
import torch

from ..errors import SqueezeNetError, WeightsError, one_line
from ..model import SqueezeNet
from ..spec import PRESETS, Spec, get_spec

Converter = Callable[[SqueezeNet], dict[str, torch.Tensor]]


def build_first_fit(path: Path, arch: str | Spec | None, adjust: Callable[[Spec], Spec], convert: Converter,
                    num_classes: int | None) -> SqueezeNet:
    """Build each candidate spec and keep the first whose tensors all fit; else the first candidate's error.

    Shapes are checked against a skeleton on the meta device, so the real network (and its memory) only
    exists once the file's own tensors fill it: a forged spec cannot make the loader allocate more than the file holds.
    """
    candidates = _candidates(path, arch, adjust, num_classes)
    errors = []
    for spec in candidates:
        try:  # shapes only, on the meta device: nothing is allocated until every tensor of the file fits
            with torch.device("meta"):
                skeleton = SqueezeNet(spec)
        except (SqueezeNetError, RuntimeError, TypeError, OverflowError) as error:  # sizes torch cannot hold
            errors.append(f"{path}: architecture {spec.name!r} cannot be built ({one_line(error, 160)})")
            continue
        try:
            state = convert(skeleton)
        except WeightsError as error:
            errors.append(str(error))
            continue
        model = SqueezeNet(spec)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:  # a dtype torch cannot copy into float parameters
            raise WeightsError(f"{path}: tensors do not load ({one_line(error, 160)})") from None
        return model
    if len(candidates) == 1:
        raise WeightsError(errors[0])
    tried = ", ".join(spec.name for spec in candidates)
    raise WeightsError(f"{errors[0]} [fits none of the architectures {tried}; pass arch= for another]")


def _candidates(path: Path, arch: str | Spec | None, adjust: Callable[[Spec], Spec],
                num_classes: int | None) -> list[Spec]:
    if isinstance(arch, Spec):
        return [arch]
    names = [arch] if arch is not None else list(PRESETS)
    try:
        candidates = [adjust(get_spec(name)) for name in names]
        if num_classes is not None:
            candidates = [spec.replace(num_classes=num_classes) for spec in candidates]
    except SqueezeNetError as error:  # e.g. a padding read from the file that no valid spec has
        raise WeightsError(f"{path}: {error}") from None
    return candidates


def fit(state: Mapping[str, torch.Tensor], model: SqueezeNet, source: str,
        foreign_names: Mapping[str, str] | None = None) -> dict[str, torch.Tensor]:
    """Check names and shapes against ``model`` in network order; the first mismatch is the error."""
    foreign_names = foreign_names or {}
    ours = model.state_dict()
    arch = model.spec.name
    for key, target in ours.items():
        label = foreign_names.get(key, key)
        if key not in state:
            raise WeightsError(f"{source}: no tensor {label!r} for architecture {arch!r}")
        if tuple(state[key].shape) != tuple(target.shape):
            raise WeightsError(f"{source}: {label!r} has shape {tuple(state[key].shape)} but architecture {arch!r} "
                               f"needs {tuple(target.shape)} (weights for another architecture?)")
    extra = [key for key in state if key not in ours]
    if extra:
        raise WeightsError(f"{source}: tensor {extra[0]!r} has no place in architecture {arch!r}")
    return {key: state[key] for key in ours}


def foreign_names(expected: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Our parameter names -> 'layer weight'/'layer bias' as the source file calls them, for error messages."""
    names = {}
    for foreign, module in expected:
        names[f"{module}.weight"] = f"{foreign} weight"
        names[f"{module}.bias"] = f"{foreign} bias"
    return names


def classes_of(final_weight: torch.Tensor | np.ndarray | None) -> int | None:
    """Output classes from the final 1x1 conv's 4-D weight, if the file has one."""
    return int(final_weight.shape[0]) if final_weight is not None and len(final_weight.shape) == 4 else None


def check_plain_convolutions(spec: Spec, path: Path, release: str) -> None:
    """Caffe-made files hold plain convolutions with biases: a batch-norm spec cannot take them."""
    if spec.batch_norm:
        raise WeightsError(f"{path}: architecture {spec.name!r} has batch norm; {release} files hold plain "
                           "convolutions with biases")
