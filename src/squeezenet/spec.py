"""The Spec: a SqueezeNet-family network described as data.

A variant of the network is a new Spec, never new code: the one builder in
``model.py`` turns any valid Spec into an ``nn.Module``. Specs are frozen,
hashable and round-trip through plain dicts (and so JSON and safetensors
metadata), which is how weights files remember what they were made for.

Rounding rule for metaparameters (the paper's formulas can give fractions):
every filter count is rounded to the nearest integer with halves rounded up,
and a squeeze layer keeps at least one filter.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import InputSizeError, SpecError

BYPASS_MODES = ("none", "simple", "complex")
# Spec fields that own no tensors: pretrained weights fit a network with any of them, so a fine-tuning may change them
WEIGHT_FREE_FIELDS = ("dropout", "final_relu", "conv1_stride")
MAX_FIRE_MODULES = 256  # far beyond any SqueezeNet (8); bounds the work a forged spec in a weights file can ask for
# Bounds on what a spec (from flags, a config or a forged file) may ask for, far above any real SqueezeNet
# (1.25M parameters, 1,000 classes, 512 channels, 227 pixels), so an absurd number is refused in one line
# instead of trying to allocate terabytes.
MAX_CHANNELS = 100_000  # filters of one layer, classes included (ImageNet-21k has 21,841)
MAX_KERNEL = 64
MAX_PARAMETERS = 100_000_000  # 400 MB of float32 weights
MAX_INPUT_SIZE = 4096  # pixels a side
MAX_BATCH = 65_536  # images in one batch


def round_half_up(value: float) -> int:
    """The one rounding rule for filter counts (Python's round() would round halves to even)."""
    return math.floor(value + 0.5 + 1e-9)


@dataclass(frozen=True)
class FireSpec:
    """Filter counts of one Fire module: squeeze 1x1 -> (expand 1x1 | expand 3x3)."""

    squeeze: int
    expand1x1: int
    expand3x3: int

    @property
    def expand(self) -> int:
        """Output channels: the two expand layers are concatenated."""
        return self.expand1x1 + self.expand3x3


@dataclass(frozen=True)
class Metaparameters:
    """The paper's Section 3.3 metaparameters, from which all Fire modules follow.

    e_i = base_e + incr_e * floor(i / freq); e3x3_i = pct_3x3 * e_i;
    e1x1_i = e_i - e3x3_i; s1x1_i = squeeze_ratio * e_i; i counts from 0.
    """

    base_e: int = 128
    incr_e: int = 128
    pct_3x3: float = 0.5
    freq: int = 2
    squeeze_ratio: float = 0.125
    num_fires: int = 8

    def validate(self) -> None:
        for name in ("base_e", "num_fires", "freq"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SpecError(f"{name} must be a positive integer, got {value!r}")
        if self.num_fires > MAX_FIRE_MODULES:
            raise SpecError(f"num_fires must be at most {MAX_FIRE_MODULES}, got {self.num_fires!r}")
        if not isinstance(self.incr_e, int) or isinstance(self.incr_e, bool) or self.incr_e < 0:
            raise SpecError(f"incr_e must be a non-negative integer, got {self.incr_e!r}")
        if not 0.0 <= float(self.pct_3x3) <= 1.0:
            raise SpecError(f"pct_3x3 must be in [0, 1], got {self.pct_3x3!r}")
        if not 0.0 < float(self.squeeze_ratio) < math.inf:
            raise SpecError(f"squeeze_ratio must be positive and finite, got {self.squeeze_ratio!r}")

    def fires(self) -> tuple[FireSpec, ...]:
        self.validate()
        modules = []
        for i in range(self.num_fires):
            expand = self.base_e + self.incr_e * (i // self.freq)
            expand3x3 = round_half_up(self.pct_3x3 * expand)
            squeeze = max(1, round_half_up(self.squeeze_ratio * expand))
            modules.append(FireSpec(squeeze, expand - expand3x3, expand3x3))
        return tuple(modules)


@dataclass(frozen=True)
class Spec:
    """Everything that fixes a SqueezeNet-family network's shape.

    ``fires`` is either an explicit tuple of FireSpec or Metaparameters that
    generate it. Fire modules are named fire2, fire3, ... as in the paper;
    ``pool_after`` names the layers ("conv1" or a Fire module) followed by a
    3x3 stride-2 max-pool that rounds its output size up, as Caffe does.
    """

    name: str = "custom"
    fires: tuple[FireSpec, ...] | Metaparameters = field(default_factory=Metaparameters)
    conv1_filters: int = 96
    conv1_kernel: int = 7
    conv1_stride: int = 2
    conv1_padding: int = 0
    pool_after: tuple[str, ...] = ("conv1", "fire4", "fire8")
    pool_kernel: int = 3
    pool_stride: int = 2
    num_classes: int = 1000
    in_channels: int = 3
    dropout: float = 0.5
    conv10_padding: int = 0
    bypass: str = "none"
    batch_norm: bool = False
    final_relu: bool = True  # False: no ReLU before the pool (a deviation; few-class nets then keep every class)
    allow_wide_squeeze: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.fires, list):
            object.__setattr__(self, "fires", tuple(self.fires))
        if isinstance(self.pool_after, list):
            object.__setattr__(self, "pool_after", tuple(self.pool_after))
        self.validate()

    # -- derived -------------------------------------------------------------

    def fire_modules(self) -> tuple[FireSpec, ...]:
        """The resolved (squeeze, expand1x1, expand3x3) list."""
        if isinstance(self.fires, Metaparameters):
            return self.fires.fires()
        return self.fires

    def fire_names(self) -> tuple[str, ...]:
        return tuple(f"fire{i + 2}" for i in range(len(self.fire_modules())))

    def layer_names(self) -> tuple[str, ...]:
        return ("conv1", *self.fire_names(), "conv10")

    def replace(self, **changes: Any) -> Spec:
        return dataclasses.replace(self, **changes)

    # -- validation ----------------------------------------------------------

    def validate(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SpecError(f"name must be a non-empty string, got {self.name!r}")
        for name in ("conv1_filters", "num_classes", "in_channels"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("conv1_kernel", "conv1_stride", "pool_kernel", "pool_stride"):
            _check_int(name, getattr(self, name), minimum=1, maximum=MAX_KERNEL)
        _check_int("conv1_padding", self.conv1_padding, minimum=0, maximum=MAX_KERNEL)
        _check_int("conv10_padding", self.conv10_padding, minimum=0, maximum=MAX_KERNEL)
        for flag in ("batch_norm", "final_relu", "allow_wide_squeeze"):
            if not isinstance(getattr(self, flag), bool):
                raise SpecError(f"{flag} must be true or false, got {getattr(self, flag)!r}")
        # Wider padding only adds zero borders, and would let a forged spec blow up the activations.
        if self.conv1_padding > self.conv1_kernel or self.conv10_padding > 1:
            raise SpecError(f"conv1_padding must be at most conv1_kernel ({self.conv1_kernel}) and conv10_padding at "
                            f"most 1, got {self.conv1_padding} and {self.conv10_padding}")
        dropout = self.dropout
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise SpecError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.bypass not in BYPASS_MODES:
            raise SpecError(f"bypass must be one of {', '.join(BYPASS_MODES)}, got {self.bypass!r}")
        if not isinstance(self.fires, (Metaparameters, tuple)):
            raise SpecError("fires must be Metaparameters or a tuple of FireSpec")
        fires = self.fire_modules()
        if not fires:
            raise SpecError("fires: a SqueezeNet needs at least one Fire module")
        if len(fires) > MAX_FIRE_MODULES:
            raise SpecError(f"fires: at most {MAX_FIRE_MODULES} Fire modules, got {len(fires)}")
        for index, fire in enumerate(fires):
            name = f"fire{index + 2}"
            if not isinstance(fire, FireSpec):
                raise SpecError(f"{name}: expected a FireSpec, got {fire!r}")
            _check_int(f"{name}.squeeze", fire.squeeze, minimum=1)
            _check_int(f"{name}.expand1x1", fire.expand1x1, minimum=0)
            _check_int(f"{name}.expand3x3", fire.expand3x3, minimum=0)
            if fire.expand < 1:
                raise SpecError(f"{name}: expand1x1 + expand3x3 must be at least 1")
            if fire.squeeze >= fire.expand and not self.allow_wide_squeeze:
                raise SpecError(
                    f"{name}.squeeze: s1x1 ({fire.squeeze}) must be less than e1x1 + e3x3 "
                    f"({fire.expand}) (the paper's Strategy 2); set allow_wide_squeeze to opt out"
                )
        if self.parameter_bound() > MAX_PARAMETERS:
            raise SpecError(f"this spec has about {self.parameter_bound():,} parameters, over the limit of "
                            f"{MAX_PARAMETERS:,} (SqueezeNet v1.0 has 1,248,424)")
        valid = ("conv1", *self.fire_names())
        for pool in self.pool_after:
            if pool not in valid:
                raise SpecError(f"pool_after: {pool!r} is not a layer of this network ({', '.join(valid)})")
        if list(self.pool_after) != sorted(set(self.pool_after), key=valid.index):
            raise SpecError("pool_after: names must be in network order without repeats")

    # -- geometry ------------------------------------------------------------

    def parameter_bound(self) -> int:
        """The parameters of the convolutions, at most a few per cent more than the network has (a complex bypass
        is counted as if every Fire module had one): what bounds a spec before anything is allocated."""
        total, channels = self.conv1_filters * (self.in_channels * self.conv1_kernel ** 2 + 1), self.conv1_filters
        for fire in self.fire_modules():
            total += fire.squeeze * (channels + 1) + fire.expand1x1 * (fire.squeeze + 1)
            total += fire.expand3x3 * (9 * fire.squeeze + 1) + channels * fire.expand
            channels = fire.expand
        return total + self.num_classes * (channels + 1)

    def spatial_sizes(self, input_size: int) -> dict[str, int]:
        """Side length of each layer's output (pools included) for a square input."""
        if isinstance(input_size, bool) or not isinstance(input_size, int) or not 1 <= input_size <= MAX_INPUT_SIZE:
            raise InputSizeError(f"input size must be an integer from 1 to {MAX_INPUT_SIZE:,} pixels, "
                                 f"got {input_size!r}")
        sizes = self._sizes_or_none(input_size)
        if sizes is None:
            minimum = self.min_input_size()
            raise InputSizeError(
                f"input {input_size}x{input_size} is too small for spec {self.name!r}: "
                f"the minimum input size is {minimum}x{minimum}"
            )
        return sizes

    def min_input_size(self) -> int:
        for size in range(1, MAX_INPUT_SIZE + 1):
            if self._sizes_or_none(size) is not None:
                return size
        raise SpecError(f"this spec needs an input larger than {MAX_INPUT_SIZE:,} pixels")

    def _sizes_or_none(self, input_size: int) -> dict[str, int] | None:
        size = (input_size + 2 * self.conv1_padding - self.conv1_kernel) // self.conv1_stride + 1
        if size < 1:
            return None
        sizes = {"conv1": size}
        for name in self.layer_names()[:-1]:
            sizes[name] = size
            if name in self.pool_after:
                if size < self.pool_kernel:
                    return None
                size = -(-(size - self.pool_kernel) // self.pool_stride) + 1
                sizes[pool_name(name)] = size
        sizes["conv10"] = size + 2 * self.conv10_padding
        return sizes

    # -- serialisation -------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if isinstance(self.fires, Metaparameters):
            data["fires"] = {"metaparameters": dataclasses.asdict(self.fires)}
        else:
            data["fires"] = [[f.squeeze, f.expand1x1, f.expand3x3] for f in self.fires]
        data["pool_after"] = list(self.pool_after)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Spec:
        if not isinstance(data, dict):
            raise SpecError(f"a spec must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"unknown spec field(s): {', '.join(unknown)}")
        values = dict(data)
        fires = values.get("fires")
        try:
            if isinstance(fires, dict):
                values["fires"] = Metaparameters(**fires["metaparameters"])
            elif fires is not None:
                values["fires"] = tuple(FireSpec(*map(int, f)) for f in fires)
        except (KeyError, TypeError, ValueError, OverflowError) as error:
            raise SpecError(f"fires: cannot read {_short(fires)} ({error})") from None
        try:
            if "pool_after" in values:
                values["pool_after"] = tuple(values["pool_after"])
            return cls(**values)
        except SpecError:
            raise
        except (TypeError, ValueError, OverflowError) as error:  # e.g. a string where a number belongs
            raise SpecError(f"bad spec: {error}") from None

    @classmethod
    def from_json(cls, text: str) -> Spec:
        try:
            return cls.from_dict(json.loads(text))
        except (json.JSONDecodeError, RecursionError) as error:
            raise SpecError(f"spec is not valid JSON: {error}") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def pool_name(after: str) -> str:
    """Pools are named by the layer they follow, as in the paper: maxpool after fire4 is pool4."""
    return "pool" + after.removeprefix("conv").removeprefix("fire")


def _check_int(name: str, value: Any, minimum: int, maximum: int = MAX_CHANNELS) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise SpecError(f"{name} must be an integer from {minimum} to {maximum:,}, got {value!r}")


# -- the registry of named variants ------------------------------------------

PRESETS: dict[str, Spec] = {}


def register(spec: Spec) -> Spec:
    """Add a named variant; ``sq.build(name)`` then finds it."""
    PRESETS[spec.name] = spec
    return spec


register(Spec(name="1_0"))  # the paper's Table 1
register(
    Spec(
        name="1_1",
        conv1_filters=64,
        conv1_kernel=3,
        pool_after=("conv1", "fire3", "fire5"),
    )
)
register(
    Spec(
        name="cifar",  # 32x32 inputs: a 3x3 stride-1 stem keeps resolution, pools come late
        conv1_filters=64,
        conv1_kernel=3,
        conv1_stride=1,
        conv1_padding=1,
        pool_after=("fire3", "fire5"),
        num_classes=10,
    )
)
register(
    Spec(
        name="cifar_fast",  # cifar with a pool after the stem too: a quarter of its MACs, for training on CPUs
        conv1_filters=64,
        conv1_kernel=3,
        conv1_stride=1,
        conv1_padding=1,
        pool_after=("conv1", "fire3", "fire5"),
        num_classes=10,
    )
)


def get_spec(name_or_spec: str | Spec, **overrides: Any) -> Spec:
    """A preset by name (or a given spec), with field overrides such as num_classes."""
    if isinstance(name_or_spec, Spec):
        spec = name_or_spec
    else:
        try:
            spec = PRESETS[name_or_spec]
        except KeyError:
            raise SpecError(
                f"unknown architecture {name_or_spec!r}; known: {', '.join(sorted(PRESETS))}"
            ) from None
    return spec.replace(**overrides) if overrides else spec
