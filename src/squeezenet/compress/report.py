"""What compression did, layer by layer: density, bits, exact bytes, and accuracy before and after.

The text table follows the paper's Tables 1 and 2: one row per convolution
with its parameters, the fraction kept, the bits of its codes, how it is
stored and the exact bytes it takes in the file (codebook, codes, gaps and its
bias), then the total against the float32 size.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..text import text_table
from .quantize import SharedLayer
from .sqz import SqzSize


@dataclass
class LayerReport:
    name: str
    params: int
    kept: int
    bits: int
    layout: str
    gap_bits: int | None
    entries: int
    codebook_bytes: int
    table_bytes: int
    codes_bytes: int
    gaps_bytes: int
    bias_bytes: int

    @property
    def density(self) -> float:
        return self.kept / self.params if self.params else 0.0

    @property
    def bytes(self) -> int:
        return self.codebook_bytes + self.table_bytes + self.codes_bytes + self.gaps_bytes + self.bias_bytes


@dataclass
class CompressionReport:
    """Per-layer and total figures of one compressed file."""

    layers: list[LayerReport]
    header_bytes: int
    other_bytes: int  # tensors stored raw that belong to no convolution (batch norm)
    float32_bytes: int  # every parameter as float32: the uncompressed size
    settings: dict[str, Any] = field(default_factory=dict)
    accuracy_before: dict[str, float] | None = None
    accuracy_after: dict[str, float] | None = None
    path: str | None = None

    @property
    def total_bytes(self) -> int:
        return self.header_bytes + self.other_bytes + sum(layer.bytes for layer in self.layers)

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def kept(self) -> int:
        return sum(layer.kept for layer in self.layers)

    @property
    def ratio(self) -> float:
        return self.float32_bytes / self.total_bytes if self.total_bytes else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "settings": self.settings,
            "layers": [{**asdict(layer), "density": layer.density, "bytes": layer.bytes} for layer in self.layers],
            "weights": self.params,
            "kept": self.kept,
            "density": self.kept / self.params if self.params else 0.0,
            "header_bytes": self.header_bytes,
            "other_bytes": self.other_bytes,
            "total_bytes": self.total_bytes,
            "float32_bytes": self.float32_bytes,
            "compression_ratio": self.ratio,
            "accuracy_before": self.accuracy_before,
            "accuracy_after": self.accuracy_after,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        header = ["layer", "weights", "density", "bits", "layout", "codebook", "tables", "codes", "gaps", "bias",
                  "bytes"]
        rows = [[
            layer.name, f"{layer.params:,}", f"{100 * layer.density:.1f}%", str(layer.bits),
            layer.layout if layer.gap_bits is None else f"{layer.layout}/{layer.gap_bits}",
            f"{layer.codebook_bytes:,}", f"{layer.table_bytes:,}", f"{layer.codes_bytes:,}", f"{layer.gaps_bytes:,}",
            f"{layer.bias_bytes:,}", f"{layer.bytes:,}",
        ] for layer in self.layers]
        sums = [sum(getattr(layer, key) for layer in self.layers)
                for key in ("codebook_bytes", "table_bytes", "codes_bytes", "gaps_bytes", "bias_bytes")]
        density = self.kept / self.params if self.params else 0.0
        rows.append(["total", f"{self.params:,}", f"{100 * density:.1f}%", "", "", *(f"{s:,}" for s in sums),
                     f"{self.total_bytes:,}"])
        lines = text_table(header, rows, total=True)
        extra = f" + {self.other_bytes:,} other" if self.other_bytes else ""
        lines.append(f"file: {self.total_bytes:,} bytes (header {self.header_bytes:,}{extra}); float32: "
                     f"{self.float32_bytes:,} bytes; {self.ratio:.1f}x smaller")
        if "init" in self.settings:
            lines.append(_settings_line(self.settings))
        for label, accuracy in (("before", self.accuracy_before), ("after", self.accuracy_after)):
            if accuracy is not None:
                top5 = f", top-5 {100 * accuracy['top5']:.2f}%" if "top5" in accuracy else ""
                lines.append(f"accuracy {label}: top-1 {100 * accuracy['top1']:.2f}%{top5} ({accuracy['n']} images)")
        return "\n".join(lines)


def _settings_line(settings: dict[str, Any]) -> str:
    """What ran, in words: the k-means start (and why, when ``init="auto"`` chose it) and the calibration."""
    init = str(settings["init"])
    if settings.get("init_auto"):
        finetuned = settings.get("finetuned")
        why = "the paper's start, for fine-tuning" if finetuned else "the closest fit without fine-tuning"
        init = f"{init} (auto: {why})"
    parts = [f"k-means start {init}"]
    if settings.get("importance"):
        parts.append("Fisher-weighted")
    if settings.get("bias_correction"):
        parts.append(f"bias-corrected on {settings['bias_correction']} images")
    if settings.get("finetuned"):
        parts.append("fine-tuned")
    return "settings: " + ", ".join(parts)


def build_report(size: SqzSize, shared: dict[str, SharedLayer], module_paths: dict[str, str],
                 float32_bytes: int, settings: dict[str, Any] | None = None) -> CompressionReport:
    """Combine where the bytes went (``SqzSize``) with what each shared layer holds."""
    by_name = {tensor.name: tensor for tensor in size.tensors}
    layers = []
    used: set[str] = set()
    for name, layer in shared.items():
        weight = by_name[module_paths[name] + ".weight"]
        bias = by_name.get(module_paths[name] + ".bias")
        used.update({weight.name, bias.name if bias else ""})
        sections = weight.sections
        layers.append(LayerReport(
            name=name, params=layer.size, kept=layer.kept, bits=layer.bits, layout=weight.layout or "",
            gap_bits=weight.gap_bits, entries=weight.entries or 0, codebook_bytes=sections["codebook"],
            table_bytes=sections["code_table"] + sections["gap_table"], codes_bytes=sections["codes"],
            gaps_bytes=sections["gaps"], bias_bytes=bias.total if bias else 0,
        ))
    other = sum(tensor.total for tensor in size.tensors if tensor.name not in used)
    return CompressionReport(layers, size.header, other, float32_bytes, dict(settings or {}))
