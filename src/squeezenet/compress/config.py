"""Every setting of one compression as data: what ``sq.compress`` takes and ``squeezenet compress`` flags map to.

``CompressConfig`` is frozen and checks each value when it is made, so a bad
setting fails at once with one line that names the field, before any weights
are read or images decoded. Checks that need the model (a layer pattern that
matches nothing) run in ``compress`` right after the one load of the weights.

``init="auto"`` (the default) picks the k-means start that measured best for
what is supplied (docs/compression.md): the paper's linear start when
fine-tuning follows, else k-means++ (the closest fit without fine-tuning: on
the paper's file at 6 bits, -1.25 points of top-1 against -2.25 for linear; with
``calib`` images Fisher-weighted and bias-corrected, -0.38).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..spec import Spec
from .layers import CompressionError, parse_per_layer
from .prune import DENSITY_PRESETS
from .quantize import INITS, MAX_BITS
from .sqz import LAYOUTS, MAX_GAP_BITS, VALUE_DTYPES, Encoding

AUTO_INIT = "auto"


def _shown(value: object) -> str:
    """A value for a one-line error: its repr, or its type when that repr is long (a tensor, a big mapping)."""
    text = repr(value)
    return text if len(text) <= 60 and "\n" not in text else f"a {type(value).__name__}"


def _fail(field: str, expected: str, value: object) -> CompressionError:
    return CompressionError(f"{field} must be {expected}, got {_shown(value)}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_density(field: str, value: object) -> None:
    if not _is_number(value) or not 0.0 < value <= 1.0:  # type: ignore[operator]
        raise CompressionError(f"{field}: density must be a number in (0, 1], got {_shown(value)}")


def _check_bits(field: str, value: object) -> None:
    if not _is_int(value) or not 1 <= value <= MAX_BITS:  # type: ignore[operator]
        raise CompressionError(f"{field}: bits must be an integer from 1 to {MAX_BITS}, got {_shown(value)}")


def _check_mapping(field: str, value: Mapping[Any, Any], check: Any) -> None:
    for pattern, item in value.items():
        if not isinstance(pattern, str) or not pattern:
            raise _fail(field, "a mapping from layer names or patterns", value)
        check(f"{field}[{pattern!r}]", item)


def _check_path(field: str, value: object) -> None:
    if value is not None and not isinstance(value, (str, Path)):
        raise _fail(field, "a path or None", value)


@dataclass(frozen=True)
class CompressConfig:
    """How to compress: pruning, sharing, calibration, fine-tuning, storage and evaluation settings."""

    arch: str | Spec | None = None  # architecture of the weights (default: from the file)
    preprocess: str | None = None  # preprocessing preset over the one the weights carry (used by calib)
    prune: str | float | Mapping[str, float] | None = "none"  # "paper", "none", a density or {pattern: density}
    bits: int | Mapping[str, int] = 6  # code width, one for all layers or {pattern: bits}
    bits_per_layer: str | Mapping[str, int] | None = None  # over bits: {pattern: bits} or "conv1=8,fire*.squeeze=7"
    init: str = AUTO_INIT  # k-means start: auto, linear (the paper's), density or kmeans++
    calib: str | Path | None = None  # unlabelled images: Fisher weighting and bias correction
    calib_images: int = 100  # the first N of calib, in sorted order
    fisher: bool = True  # with calibration images: weigh each weight's k-means error by its Fisher information
    bias_correction: bool = True  # with calibration images: take back each layer's mean shift after sharing
    rate_cost: float = 0.0  # > 0: entropy-constrained k-means (shorter Huffman codes for more error)
    huffman: bool = False
    layout: str = "auto"  # sparse, dense or auto (the smaller per layer)
    gap_bits: int | str = 4  # bits of a sparse relative index, or "auto"
    codebook_dtype: str = "float32"
    raw_dtype: str = "float32"  # biases and other tensors stored raw
    finetune_data: str | Path | None = None  # training data to fine-tune on after pruning and after sharing
    epochs: int = 1  # fine-tuning epochs per stage
    lr: float | None = None  # fine-tuning learning rate (None: finetune.FINETUNE_DEFAULTS)
    finetune_out: str | Path | None = None  # fine-tuning run folders (default: OUT.finetune)
    eval_data: str | Path | None = None  # labelled images or a dataset's test split: accuracy before and after
    metadata: Mapping[str, str] | None = None  # extra text stored in the .sqz header

    def __post_init__(self) -> None:
        if self.arch is not None and not isinstance(self.arch, (str, Spec)):
            raise _fail("arch", "a preset name, a Spec or None", self.arch)
        if self.preprocess is not None and not isinstance(self.preprocess, str):
            raise _fail("preprocess", "a preprocessing preset name or None", self.preprocess)
        self._check_prune()
        if isinstance(self.bits, Mapping):
            _check_mapping("bits", self.bits, _check_bits)
        else:
            _check_bits("bits", self.bits)
        self.layer_bits()  # parses and checks bits_per_layer
        if self.init != AUTO_INIT and self.init not in INITS:
            raise _fail("init", f"one of {', '.join((AUTO_INIT, *INITS))}", self.init)
        self._check_calibration()
        if not _is_number(self.rate_cost) or not self.rate_cost >= 0:
            raise _fail("rate_cost", ">= 0", self.rate_cost)
        self._check_storage()
        self._check_finetuning()
        _check_path("eval_data", self.eval_data)
        if self.metadata is not None and not (isinstance(self.metadata, Mapping) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.metadata.items())):
            raise _fail("metadata", "a mapping of strings to strings", self.metadata)

    def _check_prune(self) -> None:
        if self.prune is None or isinstance(self.prune, Mapping):
            _check_mapping("prune", self.prune or {}, _check_density)
        elif isinstance(self.prune, str):
            if self.prune not in DENSITY_PRESETS:
                raise _fail("prune", f"{', '.join(DENSITY_PRESETS)}, a density in (0, 1] or a mapping", self.prune)
        else:
            _check_density("prune", self.prune)

    def _check_calibration(self) -> None:
        _check_path("calib", self.calib)
        if not _is_int(self.calib_images) or self.calib_images < 1:
            raise _fail("calib_images", "an integer >= 1", self.calib_images)
        for name in ("fisher", "bias_correction", "huffman"):
            if not isinstance(getattr(self, name), bool):
                raise _fail(name, "True or False", getattr(self, name))

    def _check_storage(self) -> None:
        if self.layout not in (*LAYOUTS, "auto"):
            raise _fail("layout", f"{', '.join(LAYOUTS)} or auto", self.layout)
        if self.gap_bits != "auto" and (not _is_int(self.gap_bits) or not 1 <= self.gap_bits <= MAX_GAP_BITS):
            raise _fail("gap_bits", f"an integer from 1 to {MAX_GAP_BITS} or 'auto'", self.gap_bits)
        for name in ("codebook_dtype", "raw_dtype"):
            if getattr(self, name) not in VALUE_DTYPES:
                raise _fail(name, " or ".join(VALUE_DTYPES), getattr(self, name))

    def _check_finetuning(self) -> None:
        _check_path("finetune_data", self.finetune_data)
        _check_path("finetune_out", self.finetune_out)
        if not _is_int(self.epochs) or self.epochs < 1:
            raise _fail("epochs", "an integer >= 1", self.epochs)
        if self.lr is not None and (not _is_number(self.lr) or not self.lr > 0):
            raise _fail("lr", "a number > 0 or None", self.lr)

    def replace(self, **changes: Any) -> CompressConfig:
        """A copy with some settings changed (checked again); an unknown name is a one-line error."""
        known = {field.name for field in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise CompressionError(f"unknown compression setting {unknown[0]!r}; known: {', '.join(sorted(known))}")
        return dataclasses.replace(self, **changes)

    def layer_bits(self) -> int | dict[str, int]:
        """``bits`` with ``bits_per_layer`` over it: one width, or a mapping by layer name or pattern."""
        if self.bits_per_layer is None:
            return self.bits if isinstance(self.bits, int) else dict(self.bits)
        if isinstance(self.bits_per_layer, str):
            overrides = parse_per_layer(self.bits_per_layer, int, "bits_per_layer")
        elif isinstance(self.bits_per_layer, Mapping):
            overrides = dict(self.bits_per_layer)
        else:
            raise _fail("bits_per_layer", 'a mapping, a "NAME=BITS,..." text or None', self.bits_per_layer)
        _check_mapping("bits_per_layer", overrides, _check_bits)
        base = {"*": self.bits} if isinstance(self.bits, int) else dict(self.bits)
        return {**base, **overrides}

    def encoding(self) -> Encoding:
        return Encoding(layout=self.layout, gap_bits=self.gap_bits, huffman=self.huffman,
                        codebook_dtype=self.codebook_dtype, raw_dtype=self.raw_dtype)

    def resolved_init(self, finetuning: bool) -> str:
        """The k-means start that runs: ``init`` as given, or for auto the one measured best for the inputs."""
        if self.init != AUTO_INIT:
            return self.init
        return "linear" if finetuning else "kmeans++"

