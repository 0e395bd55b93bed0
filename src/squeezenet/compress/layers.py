"""Per-layer compression settings given by name or pattern, and the error for settings that cannot apply.

Every convolution weight is compressed; biases (and batch-norm tensors) stay
dense. Layers go by their short names as in the paper's Table 1 (``conv1``,
``fire2.squeeze``, ``fire2.expand1x1``, ``fire2.expand3x3``, ..., ``conv10``;
``weights.names`` is the table). Per-layer settings are mappings from such names, or from shell
patterns over them (``fire*.expand3x3``), to values; the last matching entry wins.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from typing import TypeVar

from ..errors import CompressionError

T = TypeVar("T")


def per_layer(value: T | Mapping[str, T], names: list[str], what: str, check: Callable[[T], None],
              default: T | None = None) -> dict[str, T]:
    """One value for every layer name: a single value for all, or a mapping by name or pattern.

    Unknown names or patterns that match nothing are errors (a typo would
    otherwise silently leave a layer uncompressed).
    """
    if not isinstance(value, Mapping):
        check(value)
        return dict.fromkeys(names, value)
    resolved: dict[str, T] = {}
    if default is not None:
        resolved = dict.fromkeys(names, default)
    for pattern, item in value.items():
        matches = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
        if not matches:
            raise CompressionError(f"{what}: {pattern!r} matches no layer (layers: {', '.join(names)})")
        check(item)
        resolved.update(dict.fromkeys(matches, item))
    missing = [name for name in names if name not in resolved]
    if missing:
        raise CompressionError(f"{what}: no value for layer(s) {', '.join(missing)}")
    return resolved


def parse_per_layer(text: str, convert: Callable[[str], T], what: str) -> dict[str, T]:
    """``"conv1=8,fire*.expand3x3=5"`` -> ``{"conv1": 8, "fire*.expand3x3": 5}`` (for the CLI)."""
    result: dict[str, T] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, raw = part.partition("=")
        if not sep or not name.strip():
            raise CompressionError(f"{what}: expected NAME=VALUE items separated by commas, got {part!r}")
        try:
            result[name.strip()] = convert(raw.strip())
        except ValueError:
            raise CompressionError(f"{what}: cannot read {raw.strip()!r} for {name.strip()!r}") from None
    if not result:
        raise CompressionError(f"{what}: no NAME=VALUE items in {text!r}")
    return result
