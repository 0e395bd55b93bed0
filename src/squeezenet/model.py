"""Fire modules and the one builder that turns any Spec into a network.

Module and parameter names follow torchvision's squeezenet.py inside a Fire
module (squeeze, expand1x1, expand3x3) and the paper's layer names outside it
(features.conv1, features.fire2, ..., classifier.conv10), so state dicts read
like the paper's Table 1 and map one-to-one onto Caffe's layer names.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import torch
from torch import nn

from .errors import InputSizeError
from .preprocess import Preprocessing
from .spec import FireSpec, Spec, get_spec, pool_name
from .text import text_table


@functools.cache
def imagenet_classes() -> tuple[tuple[str, str], ...]:
    """The 1000 ILSVRC-2012 classes as (wnid, names), in the index order of Caffe's and torchvision's outputs."""
    text = resources.files(__package__).joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    classes = tuple(tuple(line.split(" ", 1)) for line in text.splitlines() if line.strip())
    return classes  # type: ignore[return-value]


@dataclass(frozen=True)
class ModelMeta:
    """What a network is and how to feed it: the facts a weights file or an exported graph carries beside its
    tensors, so that predict, evaluate and export need nothing else. Frozen: change it with ``replace``."""

    spec: Spec
    preprocessing: Preprocessing | None = None  # PIL image -> the input tensor these weights expect
    class_names: tuple[str, ...] | None = None  # None: ImageNet's for 1000 outputs, else numbered

    def __post_init__(self) -> None:
        if self.class_names is not None:
            names = tuple(str(name) for name in self.class_names)
            if len(names) != self.spec.num_classes:
                raise ValueError(f"{len(names)} class names for {self.spec.num_classes} outputs")
            object.__setattr__(self, "class_names", names)

    def replace(self, **changes: Any) -> ModelMeta:
        return dataclasses.replace(self, **changes)

    @property
    def labels(self) -> list[str]:
        """A name for every output: the stored ones, ImageNet's for 1000 outputs, else ``class N``."""
        if self.class_names is not None:
            return list(self.class_names)
        if self.spec.num_classes == 1000:
            return [name for _, name in imagenet_classes()]
        return [f"class {index}" for index in range(self.spec.num_classes)]


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1,
          padding: int = 0, batch_norm: bool = False) -> nn.Module:
    """A plain convolution, or convolution + batch norm (a documented deviation from the paper)."""
    if not batch_norm:
        return nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding)
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=False),
        norm=nn.BatchNorm2d(out_channels),
    ))


class Fire(nn.Module):
    """Squeeze with few 1x1 filters, then expand with 1x1 and 3x3 filters, concatenated.

    The squeeze layer is Strategy 2 of the paper: it limits the input channels
    the expensive 3x3 filters see. An expand branch with zero filters is left
    out (the paper's pct_3x3 sweep reaches the ends of [0, 1]). ``bypass`` is
    the paper's Section 6: None, an identity (simple), or a 1x1 conv (complex)
    added to the module's output.
    """

    def __init__(self, in_channels: int, fire: FireSpec, batch_norm: bool = False,
                 bypass: str | None = None) -> None:
        super().__init__()
        self.squeeze = _conv(in_channels, fire.squeeze, 1, batch_norm=batch_norm)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = _conv(fire.squeeze, fire.expand1x1, 1, batch_norm=batch_norm) if fire.expand1x1 else None
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = (
            _conv(fire.squeeze, fire.expand3x3, 3, padding=1, batch_norm=batch_norm) if fire.expand3x3 else None
        )
        self.expand3x3_activation = nn.ReLU(inplace=True)
        if bypass == "identity":
            self.bypass: nn.Module | None = nn.Identity()
        elif bypass == "conv":
            self.bypass = nn.Conv2d(in_channels, fire.expand, 1)
        else:
            self.bypass = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = self.squeeze_activation(self.squeeze(x))
        branches = []
        if self.expand1x1 is not None:
            branches.append(self.expand1x1_activation(self.expand1x1(squeezed)))
        if self.expand3x3 is not None:
            branches.append(self.expand3x3_activation(self.expand3x3(squeezed)))
        out = torch.cat(branches, 1) if len(branches) > 1 else branches[0]
        if self.bypass is not None:
            out = out + self.bypass(x)
        return out


def _bypass_kind(mode: str, in_channels: int, out_channels: int) -> str | None:
    """Simple bypass only where channels match; complex adds a 1x1 conv where they do not."""
    if mode == "none":
        return None
    if in_channels == out_channels:
        return "identity"
    return "conv" if mode == "complex" else None


class SqueezeNet(nn.Module):
    """A SqueezeNet-family network built from a Spec; forward returns logits.

    Initialisation follows torchvision's reference: uniform Kaiming (He) for
    every convolution, N(0, 0.01) for the final conv10 (so initial logits are
    small and the loss starts near ln(num_classes)), and zero biases.
    """

    def __init__(self, spec: Spec, meta: ModelMeta | None = None) -> None:
        super().__init__()
        if meta is not None and meta.spec != spec:
            raise ValueError("meta describes another spec than the one to build")
        self.meta = meta or ModelMeta(spec)
        self.min_input_size = spec.min_input_size()

        def pool() -> nn.MaxPool2d:
            return nn.MaxPool2d(spec.pool_kernel, spec.pool_stride, ceil_mode=True)

        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["conv1"] = _conv(spec.in_channels, spec.conv1_filters, spec.conv1_kernel,
                                spec.conv1_stride, spec.conv1_padding, spec.batch_norm)
        layers["relu1"] = nn.ReLU(inplace=True)
        if "conv1" in spec.pool_after:
            layers[pool_name("conv1")] = pool()
        channels = spec.conv1_filters
        for name, fire in zip(spec.fire_names(), spec.fire_modules(), strict=True):
            layers[name] = Fire(channels, fire, spec.batch_norm, _bypass_kind(spec.bypass, channels, fire.expand))
            channels = fire.expand
            if name in spec.pool_after:
                layers[pool_name(name)] = pool()
        self.features = nn.Sequential(layers)
        self.classifier = nn.Sequential(OrderedDict(
            dropout=nn.Dropout(spec.dropout),
            conv10=nn.Conv2d(channels, spec.num_classes, 1, padding=spec.conv10_padding),
            relu10=nn.ReLU(inplace=True) if spec.final_relu else nn.Identity(),
            pool10=nn.AdaptiveAvgPool2d(1),
        ))
        self._initialise()

    @property
    def spec(self) -> Spec:
        return self.meta.spec

    @property
    def preprocess(self) -> Preprocessing | None:
        return self.meta.preprocessing

    def _initialise(self) -> None:
        final = self.classifier.conv10
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                if module is final:
                    nn.init.normal_(module.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    @property
    def num_features(self) -> int:
        """Channels of the fire9 map that conv10 reads: the width of ``forward_head(..., pre_logits=True)``."""
        return self.classifier.conv10.in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's output, the last Fire module's map (N, num_features, H, W): what a new head reads."""
        if not torch.jit.is_tracing() and not torch.compiler.is_compiling():
            height, width = x.shape[-2:]
            if min(height, width) < self.min_input_size:
                raise InputSizeError(
                    f"input {height}x{width} is too small for {self.spec.name!r}: "
                    f"the minimum input size is {self.min_input_size}x{self.min_input_size}"
                )
        return self.features(x)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The classifier on a ``forward_features`` map: logits (N, num_classes), or with ``pre_logits`` the
        map after the classifier's dropout, averaged over space: (N, num_features), before conv10.

        SqueezeNet's classifier is a 1x1 conv applied before the global pool, so the logits are the pool of
        relu(conv10(map)), not a linear function of these pooled features; they are (logits = W @ pooled + b)
        only for a spec with ``final_relu=False`` and ``conv10_padding=0``. The pooled features are what a
        linear probe or a feature extractor takes, as timm's ``pre_logits`` are.
        """
        if pre_logits:
            return torch.flatten(nn.functional.adaptive_avg_pool2d(self.classifier.dropout(features), 1), 1)
        return torch.flatten(self.classifier(features), 1)

    def reset_classifier(self, num_classes: int, class_names: Sequence[str] | None = None) -> None:
        """A new conv10 with ``num_classes`` filters, for fine-tuning a trained backbone on other classes.

        Initialised as a fresh network's (N(0, 0.01), zero bias), with the old layer's padding, device and
        dtype; ``meta`` follows (spec.num_classes, and ``class_names``, which default to None).
        """
        spec = self.spec.replace(num_classes=num_classes)  # a SpecError for a count that is no positive integer
        meta = self.meta.replace(spec=spec, class_names=None if class_names is None else tuple(class_names))
        old = self.classifier.conv10
        new = nn.Conv2d(old.in_channels, num_classes, 1, padding=old.padding, bias=old.bias is not None,
                        device=old.weight.device, dtype=old.weight.dtype)
        nn.init.normal_(new.weight, mean=0.0, std=0.01)
        if new.bias is not None:
            nn.init.zeros_(new.bias)
        self.classifier.conv10 = new
        self.meta = meta

    def set_weight_free_options(self, dropout: float | None = None, final_relu: bool | None = None,
                                conv1_stride: int | None = None) -> None:
        """Another dropout rate, final ReLU or conv1 stride for this network, its weights kept: the settings that
        own no weights, and so the ones a fine-tuning may change (None keeps one as it is). ``meta.spec`` follows.

        conv1 at stride 1 on an image upscaled half as much gives the later layers maps of the same size, for
        the same cost, while its filters see twice as much of the small image."""
        changes = {name: value for name, value in (("dropout", dropout), ("final_relu", final_relu),
                                                   ("conv1_stride", conv1_stride)) if value is not None}
        spec = self.spec.replace(**changes)  # a SpecError for a rate outside [0, 1) or a stride below 1
        self.classifier.dropout = nn.Dropout(spec.dropout)
        self.classifier.relu10 = nn.ReLU(inplace=True) if spec.final_relu else nn.Identity()
        conv1 = self.features.conv1[0] if isinstance(self.features.conv1, nn.Sequential) else self.features.conv1
        conv1.stride = (spec.conv1_stride, spec.conv1_stride)
        self.min_input_size = spec.min_input_size()
        self.meta = self.meta.replace(spec=spec)


def build(arch: str | Spec = "1_0", **overrides: Any) -> SqueezeNet:
    """Any preset name or Spec -> a freshly initialised network.

    ``build("1_0", num_classes=10)`` overrides spec fields by name.
    """
    return SqueezeNet(get_spec(arch, **overrides))


# -- summary: the paper's Table 1 for any spec ---------------------------------


@dataclass
class LayerSummary:
    name: str
    kind: str
    output: dict[int, tuple[int, int, int]]
    params: int
    macs: dict[int, int]
    s1x1: int | None = None
    e1x1: int | None = None
    e3x3: int | None = None


@dataclass
class Summary:
    spec: Spec
    input_sizes: tuple[int, ...]
    layers: list[LayerSummary] = field(default_factory=list)

    @property
    def total_params(self) -> int:
        return sum(layer.params for layer in self.layers)

    def total_macs(self, size: int) -> int:
        return sum(layer.macs[size] for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.spec.name,
            "spec": self.spec.to_dict(),
            "input_sizes": list(self.input_sizes),
            "layers": [
                {
                    "name": layer.name,
                    "type": layer.kind,
                    "output": {str(s): list(layer.output[s]) for s in self.input_sizes},
                    "s1x1": layer.s1x1,
                    "e1x1": layer.e1x1,
                    "e3x3": layer.e3x3,
                    "params": layer.params,
                    "macs": {str(s): layer.macs[s] for s in self.input_sizes},
                }
                for layer in self.layers
            ],
            "total_params": self.total_params,
            "total_macs": {str(s): self.total_macs(s) for s in self.input_sizes},
            "size_mb_fp32": self.total_params * 4 / 1e6,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        sizes = self.input_sizes
        header = ["layer", *(f"output @{s}" for s in sizes), "s1x1", "e1x1", "e3x3", "params",
                  *(f"MACs @{s}" for s in sizes)]
        rows = []
        for layer in self.layers:
            rows.append([
                layer.name,
                *("x".join(map(str, (layer.output[s][1], layer.output[s][2], layer.output[s][0])))
                  for s in sizes),
                *(str(v) if v is not None else "" for v in (layer.s1x1, layer.e1x1, layer.e3x3)),
                f"{layer.params:,}" if layer.params else "",
                *(f"{layer.macs[s]:,}" if layer.macs[s] else "" for s in sizes),
            ])
        rows.append(["total", *("" for _ in sizes), "", "", "", f"{self.total_params:,}",
                     *(f"{self.total_macs(s):,}" for s in sizes)])
        title = (f"SqueezeNet {self.spec.name!r}: {self.spec.num_classes} classes, "
                 f"{self.total_params:,} parameters ({self.total_params * 4 / 1e6:.2f} MB as float32)")
        return "\n".join([title, *text_table(header, rows)])


def summary(model_or_spec: nn.Module | Spec | str, input_size: int | tuple[int, ...] = (224, 227)) -> Summary:
    """Per-layer output sizes, filter counts, parameters and multiply-accumulates.

    Measured on the real module with forward hooks (so bypass and batch-norm
    variants are counted as built), at each requested square input size.
    """
    model = model_or_spec if isinstance(model_or_spec, nn.Module) else build(model_or_spec)
    if not isinstance(model, SqueezeNet):
        raise TypeError("summary() needs a SqueezeNet or a Spec")
    spec = model.spec
    sizes = (input_size,) if isinstance(input_size, int) else tuple(input_size)
    for size in sizes:
        spec.spatial_sizes(size)  # raises a clear error when too small
    top_level = [(n, m) for n, m in model.features.named_children() if not isinstance(m, nn.ReLU)]
    top_level += [(n, m) for n, m in model.classifier.named_children() if n in ("conv10", "pool10")]
    outputs: dict[str, dict[int, tuple[int, int, int]]] = {n: {} for n, _ in top_level}
    macs: dict[str, dict[int, int]] = {n: dict.fromkeys(sizes, 0) for n, _ in top_level}
    hooks = []
    current: dict[str, int] = {}

    def record_output(name: str):
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            outputs[name][current["size"]] = tuple(output.shape[1:])
        return hook

    def record_macs(name: str):
        def hook(module: nn.Conv2d, _inputs: Any, output: torch.Tensor) -> None:
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            macs[name][current["size"]] += output.numel() // output.shape[0] * per_output
        return hook

    for name, module in top_level:
        hooks.append(module.register_forward_hook(record_output(name)))
        for sub in module.modules():
            if isinstance(sub, nn.Conv2d):
                hooks.append(sub.register_forward_hook(record_macs(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for size in sizes:
                current["size"] = size
                model(torch.zeros(1, spec.in_channels, size, size))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)

    result = Summary(spec, sizes)
    fires = dict(zip(spec.fire_names(), spec.fire_modules(), strict=True))
    for name, module in top_level:
        fire = fires.get(name)
        kind = "fire" if fire else ("maxpool" if name.startswith("pool") and name != "pool10" else
                                    "avgpool" if name == "pool10" else "conv")
        result.layers.append(LayerSummary(
            name=name,
            kind=kind,
            output=outputs[name],
            params=sum(p.numel() for p in module.parameters()),
            macs=macs[name],
            s1x1=fire.squeeze if fire else None,
            e1x1=fire.expand1x1 if fire else None,
            e3x3=fire.expand3x3 if fire else None,
        ))
    return result
